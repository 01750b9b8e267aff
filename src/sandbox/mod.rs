//! The sandbox cloud: an OpenStack-compatible cloud on 127.0.0.1 that speaks, on one port and
//! with devstack's URL layout, the APIs the factory uses (Keystone v3 `/identity`, Nova v2.1
//! `/compute`, Glance v2 `/image`, Neutron v2.0 `/network`, Cinder v3 `/volume`, Swift v1
//! `/object-store`, Heat v1 `/orchestration`), with the bodies, headers, status codes and
//! error formats of the OpenStack API reference, so that the real `openstack` client works.
//!
//! Everything persists under a data directory; lifecycles take small configurable delays; a
//! [`FaultPlan`] injects failures. Servers are run by a [`ComputeDriver`]: real QEMU virtual
//! machines ([`qemu`]) when QEMU is installed, else a state machine (see [`Machines`]).

pub mod compute;
pub mod driver;
pub mod error;
pub mod faults;
pub mod heat;
pub mod identity;
pub mod image;
pub mod network;
pub mod object;
pub mod orchestration;
pub mod qemu;
pub mod store;
pub mod util;
pub mod volume;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::Value;
use tokio::task::JoinSet;

use crate::openstack::config::Secret;

pub use driver::{
    ComputeDriver, Delays, DriverError, DriverLimits, Nic, Power, ServerSpec, StateMachineDriver,
};
pub use error::{ApiError, SandboxError, Service};
pub use faults::{FaultPlan, FaultRule, Faults, ServerError, SnapshotFailure};

use store::Store;

/// How to run a sandbox.
#[derive(Clone)]
pub struct SandboxOptions {
    /// Where the state, images, volumes and objects live; kept across restarts.
    pub data_dir: PathBuf,
    /// 0 picks a free port.
    pub port: u16,
    pub state_delays: Delays,
    /// How long a token lives.
    pub token_ttl: Duration,
    /// What runs the servers, unless `driver` is given.
    pub machines: Machines,
    /// A driver of the caller's, used whatever `machines` says.
    pub driver: Option<Arc<dyn ComputeDriver>>,
}

/// What runs the sandbox's servers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Machines {
    /// QEMU virtual machines when qemu-system-x86_64 and qemu-img are installed, else the state
    /// machine (the log says which, and why).
    #[default]
    Auto,
    /// QEMU virtual machines, or a failure to start.
    Qemu,
    /// States and delays only: fast, for API tests.
    StateMachine,
}

impl SandboxOptions {
    pub fn new(data_dir: impl Into<PathBuf>) -> SandboxOptions {
        SandboxOptions {
            data_dir: data_dir.into(),
            port: 0,
            state_delays: Delays::default(),
            token_ttl: Duration::from_secs(3600),
            machines: Machines::Auto,
            driver: None,
        }
    }

    /// Options on the default data directory: the platform's data directory for
    /// image-factory, plus `/sandbox`.
    pub fn with_default_dir() -> Result<SandboxOptions, SandboxError> {
        Ok(SandboxOptions::new(default_data_dir()?))
    }
}

pub fn default_data_dir() -> Result<PathBuf, SandboxError> {
    directories::ProjectDirs::from("", "", "image-factory")
        .map(|dirs| dirs.data_dir().join("sandbox"))
        .ok_or(SandboxError::NoDataDir)
}

/// What every handler shares.
pub struct Ctx {
    pub store: Store,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub delays: Delays,
    pub token_ttl: chrono::Duration,
    pub faults: FaultPlan,
    pub driver: Arc<dyn ComputeDriver>,
    tasks: Mutex<JoinSet<()>>,
}

pub type Shared = Arc<Ctx>;

impl Ctx {
    /// Runs a lifecycle step in the background; aborted at shutdown (and resumed at the next
    /// start from the persisted state).
    pub fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        while tasks.try_join_next().is_some() {}
        tasks.spawn(task);
    }
}

/// Parses a JSON request body, answering the service's own 400 when it is not JSON.
pub fn parse_json(service: Service, body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(service, format!("Malformed request body: {e}")))
}

/// A running sandbox.
pub struct Sandbox {
    ctx: Shared,
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Drop for Sandbox {
    /// A sandbox dropped without `shutdown` stops serving (its stop channel closes) and
    /// abandons its background steps, which would otherwise keep it alive. Its virtual machines
    /// keep running (a kept builder stays reachable) and the next start adopts them.
    fn drop(&mut self) {
        self.ctx
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .abort_all();
    }
}

/// Starts the sandbox: opens (or creates) the data directory, binds 127.0.0.1, serves.
pub async fn start(opts: SandboxOptions) -> Result<Sandbox, SandboxError> {
    let store = Store::open(&opts.data_dir)?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", opts.port))
        .await
        .map_err(|source| SandboxError::Bind {
            port: opts.port,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| SandboxError::Bind {
        port: opts.port,
        source,
    })?;
    let driver = qemu::select(&opts).await?;
    let ctx = Arc::new(Ctx {
        store,
        base: format!("http://{addr}"),
        delays: opts.state_delays,
        token_ttl: chrono::Duration::from_std(opts.token_ttl)
            .unwrap_or_else(|_| chrono::Duration::hours(1)),
        faults: FaultPlan::default(),
        driver,
        tasks: Mutex::new(JoinSet::new()),
    });
    if ctx.store.fresh {
        network::seed(&ctx)?;
    }
    compute::reconcile_machines(&ctx).await;
    compute::recover(&ctx);
    image::recover(&ctx);
    volume::recover(&ctx);
    orchestration::recover(&ctx);
    compute::watch_faults(&ctx);
    compute::watch_power(&ctx);
    network::sync_floating_ips(&ctx).await;
    ctx.store.save_now()?;

    let app = app(ctx.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await
    });
    tracing::info!(url = %ctx.base, data_dir = %opts.data_dir.display(), machines = %ctx.driver.describe(), "sandbox cloud started");
    Ok(Sandbox {
        ctx,
        addr,
        stop: Some(stop),
        server: Some(server),
    })
}

/// Runs a sandbox until Ctrl-C, for `factory sandbox`. To show its URL or clouds.yaml first,
/// use [`start`] then [`Sandbox::until_ctrl_c`].
pub async fn serve_forever(opts: SandboxOptions) -> Result<(), SandboxError> {
    start(opts).await?.until_ctrl_c().await;
    Ok(())
}

impl Sandbox {
    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        self.ctx.base.clone()
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Keystone's URL, as clouds.yaml's `auth_url`.
    pub fn auth_url(&self) -> String {
        format!("{}/identity", self.ctx.base)
    }

    pub fn username(&self) -> &str {
        &self.ctx.store.credentials.username
    }

    pub fn password(&self) -> Secret {
        Secret::new(self.ctx.store.credentials.password.clone())
    }

    /// The application credential's id and secret.
    pub fn application_credential(&self) -> (String, Secret) {
        let c = &self.ctx.store.credentials;
        (
            c.application_credential_id.clone(),
            Secret::new(c.application_credential_secret.clone()),
        )
    }

    pub fn project_id(&self) -> String {
        self.ctx.store.read(|d| d.identity.project_id.clone())
    }

    pub fn data_dir(&self) -> PathBuf {
        self.ctx.store.data_dir.clone()
    }

    /// One cloud's entry for clouds.yaml, indented to sit under `clouds:`.
    pub fn clouds_yaml_entry(&self, name: &str) -> String {
        format!(
            "  {name}:\n    auth:\n      auth_url: {}\n      username: {}\n      password: \"{}\"\n      \
             project_name: admin\n      user_domain_name: Default\n      project_domain_name: Default\n    \
             region_name: RegionOne\n    identity_api_version: 3\n",
            self.auth_url(),
            self.username(),
            self.ctx.store.credentials.password,
        )
    }

    /// A whole clouds.yaml holding this one cloud.
    pub fn clouds_yaml(&self, name: &str) -> String {
        format!("clouds:\n{}", self.clouds_yaml_entry(name))
    }

    /// What runs the servers, in one line (QEMU and its accelerator, or the state machine).
    pub fn machines(&self) -> String {
        self.ctx.driver.describe()
    }

    pub fn faults(&self) -> FaultPlan {
        self.ctx.faults.clone()
    }

    /// Serves until Ctrl-C, then shuts down.
    pub async fn until_ctrl_c(self) {
        let _ = tokio::signal::ctrl_c().await;
        self.shutdown().await;
    }

    /// Stops serving, abandons the lifecycle steps under way (the next start resumes them),
    /// stops the virtual machines (their servers become SHUTOFF) and leaves the state on disk.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            match server.await {
                Ok(Err(e)) => tracing::warn!("sandbox server: {e}"),
                Err(e) => tracing::warn!("sandbox server task: {e}"),
                Ok(Ok(())) => {}
            }
        }
        let mut tasks =
            std::mem::take(&mut *self.ctx.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        tasks.shutdown().await;
        compute::stop_machines(&self.ctx).await;
        if let Err(e) = self.ctx.store.save_now() {
            tracing::warn!("{e}");
        }
    }
}

fn app(ctx: Shared) -> Router {
    let plan = ctx.faults.clone();
    let sandbox = Router::new()
        .route(
            "/_sandbox/faults",
            get(faults::get_faults)
                .post(faults::post_faults)
                .delete(faults::delete_faults),
        )
        .with_state(plan.clone());
    Router::new()
        .merge(identity::router(ctx.clone()))
        .merge(compute::router(ctx.clone()))
        .merge(image::router(ctx.clone()))
        .merge(network::router(ctx.clone()))
        .merge(volume::router(ctx.clone()))
        .merge(object::router(ctx.clone()))
        .merge(orchestration::router(ctx.clone()))
        .merge(sandbox)
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(plan, faults::inject))
        .layer(axum::middleware::from_fn(log_request))
}

/// An unknown URL answers the 404 of the service it falls under.
async fn not_found(request: Request) -> Response {
    let service = Service::from_path(request.uri().path());
    match service {
        Some(service) => {
            ApiError::not_found(service, "The resource could not be found.").into_response()
        }
        None => (StatusCode::NOT_FOUND, "Not Found\n").into_response(),
    }
}

/// Logs each call (path only: query strings and headers may carry secrets) and gives it the
/// `X-Openstack-Request-Id` every OpenStack service returns.
async fn log_request(request: Request, next: axum::middleware::Next) -> Response {
    let method = request.method().clone();
    let uri = request.uri().path().to_string();
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if !headers.contains_key("x-openstack-request-id")
        && let Ok(v) = axum::http::HeaderValue::from_str(&format!("req-{}", util::new_id()))
    {
        headers.insert("x-openstack-request-id", v);
    }
    tracing::debug!(%method, %uri, status = response.status().as_u16(), "sandbox");
    response
}
