//! The portal's JSON API as both ends see it: the paths and the request bodies. The server's
//! routes and the client that acts for the participants (`enrol::api`) both use these, so a
//! path or a field is spelled once.

use serde::{Deserialize, Serialize};

pub const LOGIN: &str = "/api/login";
pub const PROJECT: &str = "/api/project";
pub const TOKENS: &str = "/api/project/tokens";
pub const JOIN: &str = "/api/project/join";
pub const START: &str = "/api/project/start";
pub const STATUS: &str = "/api/project/status";
pub const RESULTS: &str = "/api/project/results";

/// `POST /api/login` (and the login form).
#[derive(Serialize, Deserialize)]
pub struct Login {
    pub user: String,
    pub password: String,
}

/// `POST /api/project`: create the project (the coordinator).
#[derive(Serialize, Deserialize)]
pub struct Create {
    pub name: String,
}

/// `POST /api/project/join`: join with a token (a site).
#[derive(Serialize, Deserialize)]
pub struct Join {
    pub token: String,
}
