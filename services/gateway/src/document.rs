//! The public API document as the gateway serves it: the services' operations, plus what
//! every operation may answer because the gateway stands in front of it, and the links
//! that say how one operation's answer leads to the next (so that a client generator or
//! a stateful fuzzer can walk from an upload to its track, from a new playlist to its
//! tracks).

use serde_json::{Map, Value, json};
use utoipa::openapi::OpenApi;

const PROBLEM: &str = "#/components/schemas/Problem";
const PROBLEM_JSON: &str = "application/problem+json";

/// `document` as served: with the edge's answers and the links. JSON, because utoipa's
/// types do not read back everything they write.
pub fn complete(document: &OpenApi) -> Value {
    let mut value = serde_json::to_value(document).unwrap_or(Value::Null);
    let Some(paths) = value.get_mut("paths").and_then(Value::as_object_mut) else {
        return value;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else { continue };
        for (method, operation) in item.iter_mut() {
            if !METHODS.contains(&method.as_str()) {
                continue;
            }
            let Some(operation) = operation.as_object_mut() else { continue };
            problems_as_problem_json(operation);
            edge_answers(path, operation);
        }
    }
    for link in LINKS {
        link.add_to(paths);
    }
    value
}

const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/// Errors are sent as `application/problem+json`; the services' annotations name the
/// `Problem` schema, which utoipa files under `application/json`.
fn problems_as_problem_json(operation: &mut Map<String, Value>) {
    let Some(responses) = operation.get_mut("responses").and_then(Value::as_object_mut) else {
        return;
    };
    for response in responses.values_mut() {
        let Some(content) = response.get_mut("content").and_then(Value::as_object_mut) else {
            continue;
        };
        let is_problem = |media: &Value| media.pointer("/schema/$ref") == Some(&json!(PROBLEM));
        if content.get("application/json").is_some_and(is_problem)
            && let Some(media) = content.remove("application/json")
        {
            content.insert(PROBLEM_JSON.to_owned(), media);
        }
    }
}

/// The answers any operation may get from the edge, whatever the service says.
fn edge_answers(path: &str, operation: &mut Map<String, Value>) {
    let secured = operation
        .get("security")
        .and_then(Value::as_array)
        .is_some_and(|requirements| requirements.iter().any(|r| r.get("bearer").is_some()));
    let parameters: Vec<String> = operation
        .get("parameters")
        .and_then(Value::as_array)
        .map(|parameters| {
            parameters.iter().filter_map(|p| p["in"].as_str().map(str::to_owned)).collect()
        })
        .unwrap_or_default();
    let has_body = operation.contains_key("requestBody");
    let mut answers: Vec<(&str, &str)> = Vec::new();
    if path.starts_with("/v1/") {
        answers.push(("429", "Rate limited: the caller's budget for this minute is spent"));
    }
    if secured {
        answers.push(("401", "No token, or a token that is invalid, expired or revoked"));
    } else if path.starts_with("/v1/") {
        // The gateway checks any token it is given, here too.
        answers.push(("401", "A token was sent that is invalid, expired or revoked"));
    }
    if parameters.iter().any(|p| p == "path") {
        answers.push(("404", "Unknown id (a malformed one included)"));
    }
    if parameters.iter().any(|p| p == "query") || has_body {
        answers.push(("400", "Malformed input: a query parameter or a body that does not parse"));
    }
    if has_body {
        answers.push(("413", "The body is larger than the route accepts"));
        answers.push(("415", "The body is not of a media type the route accepts"));
        answers.push(("422", "The body is well-formed but invalid"));
    }
    answers.push(("503", "A store or service this operation needs is unavailable"));
    let responses = operation.entry("responses").or_insert_with(|| json!({}));
    let Some(responses) = responses.as_object_mut() else { return };
    for (status, description) in answers {
        responses.entry(status).or_insert_with(|| {
            json!({
                "description": description,
                "content": {PROBLEM_JSON: {"schema": {"$ref": PROBLEM}}}
            })
        });
    }
}

/// One OpenAPI link: a 2xx answer of `from` feeds `to`.
struct Link {
    from: (&'static str, &'static str),
    name: &'static str,
    to: (&'static str, &'static str),
    /// Parameter name to runtime expression.
    parameters: &'static [(&'static str, &'static str)],
    /// A request body, with runtime expressions as string values.
    body: Option<&'static str>,
}

impl Link {
    /// Adds the link to every 2xx answer of its source, if source and target exist.
    fn add_to(&self, paths: &mut Map<String, Value>) {
        let (to_method, to_path) = self.to;
        if paths.get(to_path).and_then(|item| item.get(to_method)).is_none() {
            return;
        }
        let (from_method, from_path) = self.from;
        let Some(responses) = paths
            .get_mut(from_path)
            .and_then(|item| item.get_mut(from_method))
            .and_then(|operation| operation.get_mut("responses"))
            .and_then(Value::as_object_mut)
        else {
            return;
        };
        let mut link = json!({
            "operationRef": format!("#/paths/{}/{to_method}", to_path.replace('~', "~0").replace('/', "~1")),
            "parameters": self.parameters.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect::<Map<_, _>>(),
        });
        if let Some(body) = self.body {
            link["requestBody"] = serde_json::from_str(body).unwrap_or(Value::Null);
        }
        for (status, response) in responses.iter_mut() {
            if !status.starts_with('2') {
                continue;
            }
            if let Some(response) = response.as_object_mut() {
                let links = response.entry("links").or_insert_with(|| json!({}));
                links[self.name] = link.clone();
            }
        }
    }
}

/// `$response.body#/id`: the id of what the answer describes.
const ITS_ID: &[(&str, &str)] = &[("id", "$response.body#/id")];
/// The id of the first item of a list answer.
const FIRST_ID: &[(&str, &str)] = &[("id", "$response.body#/items/0/id")];
/// The id in the request's own path.
const SAME_ID: &[(&str, &str)] = &[("id", "$request.path.id")];

macro_rules! links {
    ($( $from_method:literal $from_path:literal => $name:literal: $to_method:literal $to_path:literal $parameters:expr $(, body $body:literal)? ;)*) => {
        &[$(Link {
            from: ($from_method, $from_path),
            name: $name,
            to: ($to_method, $to_path),
            parameters: $parameters,
            body: links!(@body $($body)?),
        }),*]
    };
    (@body) => { None };
    (@body $body:literal) => { Some($body) };
}

const LINKS: &[Link] = links! {
    // An upload, and the catalog's lists, lead to a track and what hangs off it.
    "post" "/v1/tracks" => "track": "get" "/v1/tracks/{id}" ITS_ID;
    "post" "/v1/tracks" => "edit": "patch" "/v1/tracks/{id}" ITS_ID;
    "post" "/v1/tracks" => "stream": "get" "/v1/tracks/{id}/stream" ITS_ID;
    "post" "/v1/tracks" => "delete": "delete" "/v1/tracks/{id}" ITS_ID;
    "get" "/v1/tracks" => "track": "get" "/v1/tracks/{id}" FIRST_ID;
    "get" "/v1/tracks" => "edit": "patch" "/v1/tracks/{id}" FIRST_ID;
    "get" "/v1/tracks" => "stream": "get" "/v1/tracks/{id}/stream" FIRST_ID;
    "get" "/v1/tracks" => "dash": "get" "/v1/tracks/{id}/dash" FIRST_ID;
    "get" "/v1/tracks" => "similar": "get" "/v1/tracks/{id}/similar" FIRST_ID;
    "get" "/v1/tracks" => "like": "put" "/v1/me/likes/{track_id}" &[("track_id", "$response.body#/items/0/id")];
    "get" "/v1/tracks" => "unlike": "delete" "/v1/me/likes/{track_id}" &[("track_id", "$response.body#/items/0/id")];
    "get" "/v1/tracks" => "play": "post" "/v1/me/plays" &[], body r#"{"track_id": "$response.body#/items/0/id", "played_ms": 1000}"#;
    "get" "/v1/tracks" => "now_playing": "put" "/v1/me/now-playing" &[], body r#"{"track_id": "$response.body#/items/0/id"}"#;
    "get" "/v1/tracks" => "new_playlist": "post" "/v1/playlists" &[], body r#"{"name": "From the catalog"}"#;
    "get" "/v1/tracks/{id}" => "album": "get" "/v1/albums/{id}" &[("id", "$response.body#/album/id")];
    "get" "/v1/tracks/{id}" => "artist": "get" "/v1/artists/{id}" &[("id", "$response.body#/artist/id")];
    "get" "/v1/tracks/{id}" => "like": "put" "/v1/me/likes/{track_id}" &[("track_id", "$response.body#/id")];
    "get" "/v1/albums" => "album": "get" "/v1/albums/{id}" FIRST_ID;
    "get" "/v1/albums" => "artwork": "get" "/v1/albums/{id}/artwork" FIRST_ID;
    "get" "/v1/artists" => "artist": "get" "/v1/artists/{id}" FIRST_ID;
    // A new playlist, or one of the caller's, leads to its tracks and followers.
    "post" "/v1/playlists" => "playlist": "get" "/v1/playlists/{id}" ITS_ID;
    "post" "/v1/playlists" => "edit": "patch" "/v1/playlists/{id}" ITS_ID;
    "post" "/v1/playlists" => "tracks": "get" "/v1/playlists/{id}/tracks" ITS_ID;
    "post" "/v1/playlists" => "add": "post" "/v1/playlists/{id}/tracks" ITS_ID;
    "post" "/v1/playlists" => "follow": "put" "/v1/playlists/{id}/followers" ITS_ID;
    "post" "/v1/playlists" => "delete": "delete" "/v1/playlists/{id}" ITS_ID;
    "get" "/v1/me/playlists" => "playlist": "get" "/v1/playlists/{id}" FIRST_ID;
    "get" "/v1/me/playlists" => "tracks": "get" "/v1/playlists/{id}/tracks" FIRST_ID;
    "get" "/v1/me/playlists" => "add": "post" "/v1/playlists/{id}/tracks" FIRST_ID;
    "get" "/v1/me/playlists" => "reorder": "put" "/v1/playlists/{id}/tracks" FIRST_ID;
    "get" "/v1/me/playlists" => "remove": "delete" "/v1/playlists/{id}/tracks" FIRST_ID;
    "get" "/v1/me/playlists" => "follow": "put" "/v1/playlists/{id}/followers" FIRST_ID;
    "get" "/v1/me/playlists" => "unfollow": "delete" "/v1/playlists/{id}/followers" FIRST_ID;
    "post" "/v1/playlists/{id}/tracks" => "reorder": "put" "/v1/playlists/{id}/tracks" SAME_ID, body r#"{"range_start": 0, "insert_before": 1, "snapshot_id": "$response.body#/snapshot_id"}"#;
    "post" "/v1/playlists/{id}/tracks" => "remove": "delete" "/v1/playlists/{id}/tracks" SAME_ID, body r#"{"positions": [0], "snapshot_id": "$response.body#/snapshot_id"}"#;
    "put" "/v1/playlists/{id}/followers" => "unfollow": "delete" "/v1/playlists/{id}/followers" SAME_ID;
    // People lead to their profiles and to following them.
    "get" "/v1/users" => "person": "get" "/v1/users/{id}" FIRST_ID;
    "get" "/v1/users" => "followers": "get" "/v1/users/{id}/followers" FIRST_ID;
    "get" "/v1/users" => "following": "get" "/v1/users/{id}/following" FIRST_ID;
    "get" "/v1/users" => "follow": "put" "/v1/me/following/{user_id}" &[("user_id", "$response.body#/items/0/id")];
    "get" "/v1/users" => "unfollow": "delete" "/v1/me/following/{user_id}" &[("user_id", "$response.body#/items/0/id")];
    // Ending one of the caller's sessions (the fuzzer's own included: it signs in again).
    "get" "/v1/me/sessions" => "end": "delete" "/v1/me/sessions/{id}" FIRST_ID;
    "get" "/v1/me/likes" => "unlike": "delete" "/v1/me/likes/{track_id}" &[("track_id", "$response.body#/items/0/track/id")];
    "get" "/v1/me/notifications" => "read": "post" "/v1/me/notifications/read" &[], body r#"{"ids": ["$response.body#/items/0/id"]}"#;
    // Signing in leads to refreshing and signing out.
    "post" "/v1/auth/login" => "refresh": "post" "/v1/auth/refresh" &[], body r#"{"refresh_token": "$response.body#/refresh_token"}"#;
    "post" "/v1/auth/register" => "refresh": "post" "/v1/auth/refresh" &[], body r#"{"refresh_token": "$response.body#/refresh_token"}"#;
    "post" "/v1/auth/refresh" => "logout": "post" "/v1/auth/logout" &[], body r#"{"refresh_token": "$response.body#/refresh_token"}"#;
};

/// The links whose source or target operation, or a target parameter, is not in
/// `document`: each would be left out silently, so the composed document is checked
/// against it in the tests.
pub fn unplaced_links(value: &Value) -> Vec<String> {
    let mut unplaced = Vec::new();
    for link in LINKS {
        let (to_method, to_path) = link.to;
        let target = &value["paths"][to_path][to_method];
        for (method, path) in [link.from, link.to] {
            if !value["paths"][path][method].is_object() {
                unplaced.push(format!("{}: no {method} {path}", link.name));
            }
        }
        let declared: Vec<&str> = target["parameters"]
            .as_array()
            .map(|parameters| parameters.iter().filter_map(|p| p["name"].as_str()).collect())
            .unwrap_or_default();
        for (name, _) in link.parameters {
            if !declared.contains(name) {
                unplaced.push(format!("{}: {to_method} {to_path} takes no {name}", link.name));
            }
        }
    }
    unplaced
}
