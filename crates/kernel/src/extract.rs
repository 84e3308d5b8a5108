//! Request extractors whose every rejection is problem+json that a person can act on: the
//! field at fault and what is wrong with it, in words, never a Rust type name. A body cut
//! off by a size limit is a 413 however many layers wrapped it.

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Request},
    http::{HeaderMap, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use serde::{Serialize, de::DeserializeOwned};

use crate::problem::Problem;

/// A JSON body: 415 unless the content type says JSON, 413 past the body limit, 400 when
/// it is not JSON, 422 when it does not have the expected shape.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Problem> {
        if !is_json(request.headers()) {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send the body as JSON, with `content-type: application/json`",
            ));
        }
        let bytes = Bytes::from_request(request, state).await.map_err(|e| body_problem(&e))?;
        parse_json(&bytes).map(Json)
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// A query string: 400 naming the parameter when one does not parse.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Problem> {
        let query = parts.uri.query().unwrap_or_default();
        let deserializer =
            serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer).map(Query).map_err(|error| {
            Problem::bad_request(describe(&error.path().to_string(), &error.inner().to_string()))
        })
    }
}

/// Path parameters. A segment that does not parse (an id that is no UUID) names nothing
/// that exists: 404.
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(rejection) if rejection.status() == StatusCode::BAD_REQUEST => {
                Err(Problem::not_found("nothing exists at this path"))
            }
            Err(rejection) => {
                tracing::error!(%rejection, "path parameters unavailable");
                Err(Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "an internal error occurred"))
            }
        }
    }
}

/// A `multipart/form-data` body: 415 for any other content type, 400 without a boundary.
/// Read its fields with [`multipart_problem`] mapping their errors.
#[derive(Debug)]
pub struct Multipart(pub axum::extract::Multipart);

impl<S: Send + Sync> FromRequest<S> for Multipart {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Problem> {
        if essence(request.headers()).as_deref() != Some("multipart/form-data") {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send the upload as `multipart/form-data`",
            ));
        }
        axum::extract::Multipart::from_request(request, state).await.map(Multipart).map_err(|_| {
            Problem::bad_request("the `multipart/form-data` content type has no valid boundary")
        })
    }
}

/// What a failure to read a multipart field means to the client: 413 when a body limit cut
/// it off, 400 for a malformed or truncated body. The library's own words for a stream
/// that failed are internal and not passed on.
pub fn multipart_problem(error: &axum::extract::multipart::MultipartError) -> Problem {
    if is_too_large(error) {
        Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "the request body is larger than allowed")
    } else if error.status().is_client_error() {
        Problem::bad_request(format!("the multipart body is malformed: {}", error.body_text()))
    } else {
        Problem::bad_request("the request body could not be read to its end")
    }
}

/// Whether a body error, or any error it wraps, is a body limit being reached.
pub fn is_too_large(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(error) = cause {
        // axum keeps the limit's error boxed a second time, as `Box<LengthLimitError>`.
        if error.is::<http_body_util::LengthLimitError>()
            || error.is::<Box<http_body_util::LengthLimitError>>()
        {
            return true;
        }
        cause = error.source();
    }
    false
}

/// A body that could not be read: 413 past a limit, else 400.
pub fn body_problem(error: &(dyn std::error::Error + 'static)) -> Problem {
    if is_too_large(error) {
        Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "the request body is larger than allowed")
    } else {
        Problem::bad_request("the request body could not be read to its end")
    }
}

/// Parses a JSON document into `T`: 400 when it is not JSON, 422 when it is but does not
/// have `T`'s shape, with the path of the field at fault.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let mut value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|error| Problem::bad_request(format!("the body is not valid JSON: {error}")))?;
    whole_numbers_as_integers(&mut value);
    from_json_value(value)
}

/// JSON has one number type: `3.0` is the integer 3 (JSON Schema agrees), which serde
/// reads into an integer field only when written `3`. Integral values within the range
/// a double holds exactly become integers before the body meets its type.
fn whole_numbers_as_integers(value: &mut serde_json::Value) {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    match value {
        serde_json::Value::Number(number) if !number.is_i64() && !number.is_u64() => {
            if let Some(float) = number.as_f64()
                && float.fract() == 0.0
                && float.abs() <= EXACT
            {
                // Exact: the value is integral and within ±2^53.
                *value = serde_json::Value::from(float as i64);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(whole_numbers_as_integers),
        serde_json::Value::Object(fields) => {
            fields.values_mut().for_each(whole_numbers_as_integers)
        }
        _ => {}
    }
}

/// Reads a JSON value already parsed into `T`: 422 naming the field at fault when its
/// shape is not `T`'s. For bodies of more than one shape, told apart by the value first.
pub fn from_json_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, Problem> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        Problem::unprocessable(describe(
            &error.path().to_string(),
            without_position(&error.inner().to_string()),
        ))
    })
}

fn is_json(headers: &HeaderMap) -> bool {
    essence(headers).is_some_and(|mime| mime == "application/json" || mime.ends_with("+json"))
}

/// The media type without its parameters, lowercase.
fn essence(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
}

/// serde_json's message without its ` at line L column C` tail.
fn without_position(message: &str) -> &str {
    message.rfind(" at line ").map_or(message, |at| &message[..at])
}

/// A deserializer's complaint about the value at `path`, in words a person can act on.
pub fn describe(path: &str, message: &str) -> String {
    let field = (!path.is_empty() && path != ".").then_some(path);
    let subject = field.map_or_else(|| "the body".to_owned(), |field| format!("`{field}`"));
    if let Some(name) = message.strip_prefix("missing field `").and_then(|m| m.strip_suffix('`')) {
        return match field {
            Some(parent) => format!("`{parent}.{name}` is required"),
            None => format!("`{name}` is required"),
        };
    }
    if let Some((got, expected)) = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "))
        .and_then(|rest| rest.split_once(", expected "))
    {
        return format!("{subject} must be {}, not {}", expectation(expected), given(got));
    }
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        let (got, options) = rest.split_once("`, expected ").unwrap_or((rest, ""));
        return format!("{subject} must be {}, not `{got}`", options.trim_start_matches("one of "));
    }
    if message.starts_with("UUID parsing failed") {
        return format!("{subject} must be a UUID");
    }
    if message.contains("untagged enum") {
        return format!("{subject} does not have the expected shape");
    }
    let plain = match message {
        "invalid digit found in string" | "cannot parse integer from empty string" => {
            "must be a whole number"
        }
        "number too large to fit in target type" => "is too large",
        "number too small to fit in target type" => "is too small",
        "invalid float literal" => "must be a number",
        "provided string was not `true` or `false`" => "must be true or false",
        other => return format!("{subject}: {other}"),
    };
    format!("{subject} {plain}")
}

/// What a deserializer expected, in words.
fn expectation(expected: &str) -> String {
    match expected {
        "usize" | "u8" | "u16" | "u32" | "u64" | "u128" => "a whole number, 0 or more".to_owned(),
        "isize" | "i8" | "i16" | "i32" | "i64" | "i128" => "a whole number".to_owned(),
        "f32" | "f64" => "a number".to_owned(),
        "a boolean" => "true or false".to_owned(),
        "a sequence" => "a list".to_owned(),
        "a map" => "an object".to_owned(),
        other if other.contains("UUID") => "a UUID".to_owned(),
        other if other.starts_with("struct ") || other.starts_with("a map") => {
            "an object".to_owned()
        }
        other if other.starts_with("a sequence") => "a list".to_owned(),
        other => other.to_owned(),
    }
}

/// What the client sent, as a deserializer describes it (`integer `5``), in words.
fn given(got: &str) -> String {
    let unquoted = |prefix: &str| {
        got.strip_prefix(prefix).map(|rest| rest.trim_start_matches('`').trim_end_matches('`'))
    };
    if let Some(number) = unquoted("integer ").or_else(|| unquoted("floating point ")) {
        return number.to_owned();
    }
    if let Some(boolean) = unquoted("boolean ") {
        return boolean.to_owned();
    }
    match got {
        "map" => "an object".to_owned(),
        "sequence" => "a list".to_owned(),
        "unit value" | "null" => "null".to_owned(),
        other => other.replacen("string ", "the string ", 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Reorder {
        range_start: usize,
        snapshot_id: Option<String>,
        track_id: uuid::Uuid,
        public: Option<bool>,
    }

    fn problem(body: &str) -> Problem {
        parse_json::<Reorder>(body.as_bytes()).unwrap_err()
    }

    const ID: &str = "0190f0b0-0000-7000-8000-000000000000";

    #[test]
    fn whole_numbers_written_with_a_fraction_are_integers() {
        let reorder: Reorder =
            parse_json(format!(r#"{{"range_start": 3.0, "track_id": "{ID}"}}"#).as_bytes())
                .unwrap();
        assert_eq!(reorder.range_start, 3);
        let fractional = problem(&format!(r#"{{"range_start": 3.5, "track_id": "{ID}"}}"#));
        assert_eq!(fractional.status, 422, "{}", fractional.detail);
    }

    #[test]
    fn shape_errors_name_the_field_and_say_what_is_wanted() {
        let negative = problem(&format!(r#"{{"range_start": -1, "track_id": "{ID}"}}"#));
        assert_eq!(negative.status, 422);
        assert_eq!(negative.detail, "`range_start` must be a whole number, 0 or more, not -1");
        let number = problem(r#"{"range_start": 1, "track_id": 5}"#);
        assert_eq!(number.detail, "`track_id` must be a UUID, not 5");
        let uuid = problem(r#"{"range_start": 1, "track_id": "five"}"#);
        assert_eq!(uuid.detail, "`track_id` must be a UUID");
        let missing = problem(r#"{"range_start": 1}"#);
        assert_eq!(missing.detail, "`track_id` is required");
        let boolean = problem(&format!(r#"{{"range_start": 1, "track_id": "{ID}", "public": 1}}"#));
        assert_eq!(boolean.detail, "`public` must be true or false, not 1");
        let text = problem(r#""text""#);
        assert_eq!(text.detail, r#"the body must be an object, not the string "text""#);
    }

    #[test]
    fn syntax_errors_are_400_and_trailing_bytes_are_refused() {
        let trailing = format!(r#"{{"range_start": 1, "track_id": "{ID}"}} x"#);
        for body in ["{", "", "{\"range_start\": 1,}", trailing.as_str()] {
            let problem = problem(body);
            assert_eq!(problem.status, 400, "{body}");
            assert!(problem.detail.starts_with("the body is not valid JSON"), "{}", problem.detail);
        }
    }

    #[test]
    fn untagged_enums_are_never_named() {
        #[derive(Debug, Deserialize)]
        #[serde(untagged)]
        #[allow(dead_code)]
        enum OneOrMany {
            One(Reorder),
            Many(Vec<Reorder>),
        }
        let problem = parse_json::<OneOrMany>(br#"{"x": 1}"#).unwrap_err();
        assert_eq!(problem.detail, "the body does not have the expected shape");
    }

    #[test]
    fn values_of_several_shapes_name_the_field_and_its_index() {
        let plays = serde_json::json!([{"range_start": 1, "track_id": ID}, {"range_start": 2}]);
        let problem = from_json_value::<Vec<Reorder>>(plays).unwrap_err();
        assert_eq!((problem.status, problem.detail.as_str()), (422, "`[1].track_id` is required"));
    }

    #[test]
    fn query_parameters_are_described_in_words() {
        assert_eq!(
            describe("limit", "invalid digit found in string"),
            "`limit` must be a whole number"
        );
        assert_eq!(
            describe("offset", "number too large to fit in target type"),
            "`offset` is too large"
        );
        assert_eq!(
            describe("window", "unknown variant `2h`, expected one of `1h`, `24h`"),
            "`window` must be `1h`, `24h`, not `2h`"
        );
    }

    #[tokio::test]
    async fn limits_are_found_however_deeply_wrapped() {
        use http_body_util::BodyExt;
        let body = http_body_util::Full::new(Bytes::from_static(b"too long"));
        let limit = http_body_util::Limited::new(body, 3).collect().await.unwrap_err();
        let wrapped = axum::Error::new(limit);
        assert!(is_too_large(&wrapped));
        assert!(!is_too_large(&std::io::Error::other("reset")));
        assert_eq!(body_problem(&wrapped).status, 413);

        // The gateway's limit inside a service's (axum's default for buffered bodies):
        // the inner one is reached first, and the rejection is still a 413.
        let gateway = http_body_util::Limited::new(
            http_body_util::Full::new(Bytes::from_static(b"{\"too\": \"long\"}")),
            3,
        );
        let request = Request::builder()
            .header(header::CONTENT_TYPE, "application/json")
            .body(axum::body::Body::new(gateway))
            .unwrap();
        let problem = Json::<serde_json::Value>::from_request(request, &()).await.unwrap_err();
        assert_eq!(problem.status, 413, "{problem}");
    }
}
