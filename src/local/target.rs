//! The system under test for a local run: nginx from a temporary config
//! when it is installed (what the cloud fleet's webserver runs), otherwise
//! a small built-in static server.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use std::time::Duration;
use tokio::process::Child;

use anyhow::Context;

/// The static page both targets serve.
pub const PAGE: &str = "<!doctype html><html><head><title>spotload target</title></head><body><h1>spotload target</h1><p>Served for a load test.</p></body></html>\n";

/// Which kind of target is running.
#[derive(Debug)]
pub enum TargetKind {
    /// nginx, run from a temporary config on a free loopback port.
    Nginx {
        /// The nginx master process.
        child: Box<Child>,
        /// Its temporary prefix (config, page, logs), removed on stop.
        dir: PathBuf,
    },
    /// The built-in static server, when nginx is not installed.
    BuiltIn {
        /// The server task, aborted on stop.
        server: tokio::task::JoinHandle<()>,
    },
    /// A server given with `--target`: not started here, so not stopped either.
    External,
}

impl TargetKind {
    /// What the target is, for the line that prints its address.
    pub fn describe(&self) -> &'static str {
        match self {
            TargetKind::Nginx { .. } => "nginx",
            TargetKind::BuiltIn { .. } => {
                "built-in static server; install nginx for a realistic target"
            }
            TargetKind::External => "given with --target",
        }
    }
}

/// The web server the load test hits in a local run.
#[derive(Debug)]
pub struct Target {
    /// Base URL without a trailing `/`, passed to the master as `--host`.
    pub url: String,
    /// What serves it, and so how to stop it.
    pub kind: TargetKind,
}

impl Target {
    /// A target that is already running at `url` (`--target`).
    pub fn external(url: &str) -> Target {
        Target {
            url: url.trim_end_matches('/').to_string(),
            kind: TargetKind::External,
        }
    }

    /// Starts nginx if it is installed, the built-in server otherwise.
    pub async fn start() -> anyhow::Result<Target> {
        let port = free_port()?;
        match find_nginx() {
            Some(nginx) => start_nginx(&nginx, port).await,
            None => start_builtin(port).await,
        }
    }

    /// Stops what [`Target::start`] started: SIGTERM to nginx (then SIGKILL after
    /// 5 s) and its directory removed, or the built-in server aborted.
    pub async fn stop(self) {
        match self.kind {
            TargetKind::Nginx { mut child, dir } => {
                // SIGTERM lets nginx stop its worker processes; SIGKILL would orphan them.
                super::children::terminate("nginx", &mut child, Duration::from_secs(5)).await;
                let _ = std::fs::remove_dir_all(dir);
            }
            TargetKind::BuiltIn { server } => server.abort(),
            TargetKind::External => {}
        }
    }
}

fn free_port() -> anyhow::Result<u16> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("no free port on 127.0.0.1")?;
    Ok(listener.local_addr()?.port())
}

fn find_nginx() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

fn nginx_config(dir: &Path, port: u16) -> String {
    let d = dir.display();
    format!(
        "worker_processes auto;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/tmp;\n  proxy_temp_path {d}/tmp;\n  fastcgi_temp_path {d}/tmp;\n  uwsgi_temp_path {d}/tmp;\n  scgi_temp_path {d}/tmp;\n\
         keepalive_requests 1000000;\n  server {{\n    listen 127.0.0.1:{port};\n    root {d}/www;\n    location / {{ index index.html; }}\n  }}\n}}\n"
    )
}

async fn start_nginx(nginx: &Path, port: u16) -> anyhow::Result<Target> {
    let dir = std::env::temp_dir().join(format!("spotload-local-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("www"))
        .and_then(|_| std::fs::create_dir_all(dir.join("tmp")))
        .with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join("www/index.html"), PAGE)?;
    std::fs::write(dir.join("nginx.conf"), nginx_config(&dir, port))?;
    let child = super::children::tied_to_parent(nginx)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .arg("-p")
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", nginx.display()))?;
    let target = Target {
        url: format!("http://127.0.0.1:{port}"),
        kind: TargetKind::Nginx {
            child: Box::new(child),
            dir: dir.clone(),
        },
    };
    if !answers(port).await {
        let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
        target.stop().await;
        anyhow::bail!("nginx did not answer on 127.0.0.1:{port}: {}", log.trim());
    }
    Ok(target)
}

async fn start_builtin(port: u16) -> anyhow::Result<Target> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{port}"))?;
    let app = axum::Router::new().fallback(|| async { axum::response::Html(PAGE) });
    let server = tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            tracing::error!("built-in target stopped: {err}");
        }
    });
    Ok(Target {
        url: format!("http://127.0.0.1:{port}"),
        kind: TargetKind::BuiltIn { server },
    })
}

/// Whether something accepts connections on the port within 5 s.
async fn answers(port: u16) -> bool {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}
