//! The messages Tonearm mails, each with a plain-text and an HTML part.

use super::OutgoingMail;
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Escapes text for HTML element content and attribute values.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// The welcome message for a new account. `base_url` is where the player is served.
pub fn welcome(
    id: Uuid,
    email: &str,
    display_name: &str,
    base_url: &str,
    at: DateTime<Utc>,
) -> OutgoingMail {
    let subject = "Welcome to Tonearm".to_owned();
    let text_body = format!(
        "Hi {display_name},\n\n\
         welcome to Tonearm. Your account is ready: open {base_url} to upload your music,\n\
         build playlists and follow your friends to see what they are playing.\n\n\
         Happy listening,\nTonearm\n"
    );
    let name = escape(display_name);
    let link = escape(base_url);
    let html_body = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Welcome to Tonearm</title></head>\n\
         <body style=\"margin:0;padding:32px;background:#0f1115;color:#e8e8ea;\
         font-family:system-ui,-apple-system,'Segoe UI',sans-serif\">\n\
         <div style=\"max-width:520px;margin:auto;background:#181b22;border-radius:12px;padding:32px\">\n\
         <h1 style=\"margin-top:0;font-size:22px\">Welcome to Tonearm, {name}</h1>\n\
         <p>Your account is ready. Upload your music, build playlists and follow your \
         friends to see what they are playing.</p>\n\
         <p><a href=\"{link}\" style=\"display:inline-block;background:#1ed760;color:#0f1115;\
         padding:10px 18px;border-radius:20px;text-decoration:none;font-weight:600\">\
         Open Tonearm</a></p>\n\
         <p style=\"color:#9a9ca5\">Happy listening,<br>Tonearm</p>\n</div>\n</body></html>\n"
    );
    OutgoingMail {
        id,
        kind: "welcome".to_owned(),
        recipient: email.to_owned(),
        subject,
        text_body,
        html_body,
        created_at: at,
        attempts: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_welcome_mail_greets_by_name_in_both_parts_and_escapes_html() {
        let mail =
            welcome(Uuid::nil(), "a@example.com", "Ann <b>&", "http://localhost:8080", Utc::now());
        assert!(mail.text_body.contains("Hi Ann <b>&,"));
        assert!(mail.html_body.contains("Ann &lt;b&gt;&amp;"));
        assert!(!mail.html_body.contains("<b>&"));
        assert!(mail.html_body.contains("href=\"http://localhost:8080\""));
        assert_eq!(mail.recipient, "a@example.com");
    }
}
