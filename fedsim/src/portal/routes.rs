//! HTTP: the pages people click and the JSON API programs call; both act on the same [`Board`].
//!
//! A session is a random token, sent as the `fedsim_session` cookie (pages) or as
//! `Authorization: Bearer` (API). Pages answer a missing session with the login page; the API
//! with 401.

use super::api::{self, Create, Join, Login};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde::Deserialize;

use super::{pages, Board, PortalError, Role, Viewer};

const COOKIE: &str = "fedsim_session";

type Shared = State<Arc<Board>>;

/// A running portal; dropping it stops the server.
pub struct Server {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Server {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Serve the portal on `addr` (port 0: any free port) on the current tokio runtime.
pub async fn serve(board: Arc<Board>, addr: SocketAddr) -> std::io::Result<Server> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let app = router(board).into_make_service_with_connect_info::<SocketAddr>();
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
        if let Err(e) = served {
            tracing::warn!(phase = "portal", error = %e, "portal stopped");
        }
    });
    Ok(Server {
        addr,
        stop: Some(stop),
    })
}

fn router(board: Arc<Board>) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/project") }))
        .route("/login", get(login_page).post(login_form))
        .route("/logout", post(logout_form))
        .route("/project", get(project_page))
        .route("/project/create", post(create_form))
        .route("/project/tokens", post(tokens_form))
        .route("/project/join", post(join_form))
        .route("/project/start", post(start_form))
        .route("/project/results.json", get(results))
        .route(api::LOGIN, post(api_login))
        .route(api::PROJECT, get(api_project).post(api_create))
        .route(api::TOKENS, post(api_tokens))
        .route(api::JOIN, post(api_join))
        .route(api::START, post(api_start))
        .route(api::STATUS, get(api_status))
        .route(api::RESULTS, get(results))
        .with_state(board)
}

fn status_of(e: &PortalError) -> StatusCode {
    match e {
        PortalError::Login | PortalError::NoSession => StatusCode::UNAUTHORIZED,
        PortalError::CoordinatorOnly(_)
        | PortalError::ParticipantOnly(_)
        | PortalError::BadToken
        | PortalError::NotJoined => StatusCode::FORBIDDEN,
        PortalError::NoProject => StatusCode::NOT_FOUND,
        PortalError::EmptyName => StatusCode::UNPROCESSABLE_ENTITY,
        PortalError::ProjectExists
        | PortalError::AlreadyJoined
        | PortalError::NotAllJoined(_)
        | PortalError::AlreadyStarted
        | PortalError::NoResults(_) => StatusCode::CONFLICT,
        PortalError::TooMany { .. } => StatusCode::TOO_MANY_REQUESTS,
        PortalError::Busy => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// The session token from the bearer header or the cookie.
fn session(headers: &HeaderMap) -> Option<String> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if let Some(b) = bearer {
        return Some(b.trim().to_string());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

fn viewer(board: &Board, headers: &HeaderMap) -> Result<Viewer, PortalError> {
    board.viewer(session(headers).as_deref())
}

// --- API ---

struct ApiError(PortalError);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.0.to_string() });
        (status_of(&self.0), Json(body)).into_response()
    }
}

impl From<PortalError> for ApiError {
    fn from(e: PortalError) -> Self {
        ApiError(e)
    }
}

type ApiResult = Result<Response, ApiError>;

/// Password checks running at once (one per core: argon2 is slow and takes 19 MiB on purpose),
/// and at most [`QUEUED`] more waiting for a turn, as futures rather than threads: a crowd of
/// guesses neither spawns a thread each nor takes the machine's memory.
static CHECKS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(0);
static CHECKS_READY: std::sync::Once = std::sync::Once::new();
static WAITING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
const QUEUED: usize = 256;

/// argon2 is slow on purpose; keep it off the async workers, a bounded number at a time.
async fn check_login(
    board: Arc<Board>,
    user: String,
    password: String,
    source: std::net::IpAddr,
) -> Result<(String, Viewer), PortalError> {
    use std::sync::atomic::Ordering;
    CHECKS_READY.call_once(|| {
        CHECKS.add_permits(std::thread::available_parallelism().map_or(1, |n| n.get()))
    });
    if WAITING.fetch_add(1, Ordering::SeqCst) >= QUEUED {
        WAITING.fetch_sub(1, Ordering::SeqCst);
        return Err(PortalError::Busy);
    }
    let permit = CHECKS.acquire().await;
    WAITING.fetch_sub(1, Ordering::SeqCst);
    let _permit = permit.map_err(|_| PortalError::Busy)?;
    tokio::task::spawn_blocking(move || board.login(&user, &password, Some(source)))
        .await
        .unwrap_or(Err(PortalError::Login))
}

async fn api_login(
    State(board): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(l): Json<Login>,
) -> ApiResult {
    let (session, who) = check_login(board, l.user, l.password, peer.ip()).await?;
    Ok(Json(serde_json::json!({
        "session": session,
        "user": who.user,
        "role": who.role,
    }))
    .into_response())
}

async fn api_project(State(board): Shared, headers: HeaderMap) -> ApiResult {
    let who = viewer(&board, &headers)?;
    Ok(Json(board.project(&who)?).into_response())
}

async fn api_create(State(board): Shared, headers: HeaderMap, Json(c): Json<Create>) -> ApiResult {
    let who = viewer(&board, &headers)?;
    board.create_project(&who, &c.name)?;
    Ok((StatusCode::CREATED, Json(board.project(&who)?)).into_response())
}

async fn api_tokens(State(board): Shared, headers: HeaderMap) -> ApiResult {
    let who = viewer(&board, &headers)?;
    Ok(Json(board.make_tokens(&who)?).into_response())
}

async fn api_join(State(board): Shared, headers: HeaderMap, Json(j): Json<Join>) -> ApiResult {
    let who = viewer(&board, &headers)?;
    board.join(&who, &j.token)?;
    // Just the fact: a thousand sites joining should not each get the thousand-site table.
    Ok(Json(serde_json::json!({"joined": who.user})).into_response())
}

async fn api_start(State(board): Shared, headers: HeaderMap) -> ApiResult {
    let who = viewer(&board, &headers)?;
    board.start(&who)?;
    Ok(Json(board.project(&who)?).into_response())
}

#[derive(Deserialize)]
struct Since {
    #[serde(default)]
    since: usize,
    /// Long poll: answer once the run's state is no longer this one...
    #[serde(default)]
    state: Option<super::RunState>,
    /// ...or after this many seconds (at most 30).
    #[serde(default)]
    wait: Option<f64>,
}

async fn api_status(State(board): Shared, headers: HeaderMap, Query(q): Query<Since>) -> ApiResult {
    let who = viewer(&board, &headers)?;
    let now = board.state();
    if let (Some(seen), Some(wait)) = (q.state, q.wait) {
        if seen == now && wait.is_finite() && wait > 0.0 {
            board
                .state_change(now, Duration::from_secs_f64(wait.min(30.0)))
                .await;
        }
    }
    Ok(Json(board.status(&who, q.since)).into_response())
}

/// The results file, as an attachment (pages and API alike).
async fn results(State(board): Shared, headers: HeaderMap) -> ApiResult {
    let who = viewer(&board, &headers)?;
    let body = board.results(&who)?;
    let name = board.project_name().unwrap_or_default();
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"results-{}.json\"", file_safe(&name)),
            ),
        ],
        body,
    )
        .into_response())
}

fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

// --- pages ---

async fn login_page() -> Html<String> {
    Html(pages::login(None))
}

async fn login_form(
    State(board): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Form(l): Form<Login>,
) -> Response {
    match check_login(board, l.user, l.password, peer.ip()).await {
        Ok((session, _)) => (
            [(
                header::SET_COOKIE,
                format!("{COOKIE}={session}; Path=/; HttpOnly; SameSite=Strict"),
            )],
            Redirect::to("/project"),
        )
            .into_response(),
        Err(e) => (status_of(&e), Html(pages::login(Some(&e.to_string())))).into_response(),
    }
}

async fn logout_form(State(board): Shared, headers: HeaderMap) -> Response {
    if let Some(s) = session(&headers) {
        board.logout(&s);
    }
    (
        [(
            header::SET_COOKIE,
            format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
        )],
        Redirect::to("/login"),
    )
        .into_response()
}

/// The project page, with an error message above it when an action was refused.
fn render(board: &Board, who: &Viewer, error: Option<&str>) -> String {
    let project = board.project(who).ok();
    let status = board.status(who, 0);
    let results = board
        .results_to_show(who)
        .ok()
        .and_then(|r| serde_json::from_slice(&r).ok());
    pages::project(who, project.as_ref(), &status, error, results.as_ref())
}

async fn project_page(State(board): Shared, headers: HeaderMap) -> Response {
    match viewer(&board, &headers) {
        Ok(who) => Html(render(&board, &who, None)).into_response(),
        Err(_) => Redirect::to("/login").into_response(),
    }
}

/// Run a page action; on success go back to the project page, else show it with the error.
fn act(
    board: &Board,
    headers: &HeaderMap,
    f: impl FnOnce(&Viewer) -> Result<(), PortalError>,
) -> Response {
    let who = match viewer(board, headers) {
        Ok(w) => w,
        Err(_) => return Redirect::to("/login").into_response(),
    };
    match f(&who) {
        Ok(()) => Redirect::to("/project").into_response(),
        Err(e) => (
            status_of(&e),
            Html(render(board, &who, Some(&e.to_string()))),
        )
            .into_response(),
    }
}

async fn create_form(State(board): Shared, headers: HeaderMap, Form(c): Form<Create>) -> Response {
    act(&board, &headers, |who| board.create_project(who, &c.name))
}

async fn tokens_form(State(board): Shared, headers: HeaderMap) -> Response {
    act(&board, &headers, |who| board.make_tokens(who).map(|_| ()))
}

async fn join_form(State(board): Shared, headers: HeaderMap, Form(j): Form<Join>) -> Response {
    act(&board, &headers, |who| board.join(who, &j.token))
}

async fn start_form(State(board): Shared, headers: HeaderMap) -> Response {
    act(&board, &headers, |who| {
        if who.role != Role::Coordinator {
            return Err(PortalError::CoordinatorOnly("start the run"));
        }
        board.start(who)
    })
}
