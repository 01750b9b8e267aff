//! A small Nova/Glance/Neutron/Cinder client over reqwest for the QEMU sandbox tests, with the
//! waits those tests need (states, console lines, an SSH banner).

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

pub struct Api {
    pub base: String,
    pub project: String,
    http: reqwest::Client,
    token: String,
}

impl Api {
    /// Logs in as the sandbox's admin.
    pub async fn login(base: &str, password: &str) -> Api {
        let http = reqwest::Client::new();
        let response = http
            .post(format!("{base}/identity/v3/auth/tokens"))
            .json(&json!({"auth": {
                "identity": {"methods": ["password"], "password": {"user": {
                    "name": "admin", "domain": {"name": "Default"}, "password": password}}},
                "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}
            }}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let token = response.headers()["x-subject-token"]
            .to_str()
            .unwrap()
            .to_string();
        let body: Value = response.json().await.unwrap();
        Api {
            base: base.to_string(),
            project: body["token"]["project"]["id"].as_str().unwrap().to_string(),
            http,
            token,
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("X-Auth-Token", &self.token)
            .header("OpenStack-API-Version", "compute 2.79");
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn get(&self, path: &str) -> Value {
        let (status, body) = self.call(Method::GET, path, None).await;
        assert!(status.is_success(), "GET {path}: {status} {body}");
        body
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        let (status, reply) = self.call(Method::POST, path, Some(body)).await;
        assert!(status.is_success(), "POST {path}: {status} {reply}");
        reply
    }

    pub async fn action(&self, server: &str, body: Value) -> Value {
        self.post(&format!("/compute/v2.1/servers/{server}/action"), body)
            .await
    }

    /// Uploads a raw disk image; returns its id once active.
    pub async fn image(&self, name: &str, file: &Path) -> String {
        let image = self
            .post(
                "/image/v2/images",
                json!({"name": name, "disk_format": "raw", "container_format": "bare"}),
            )
            .await;
        let id = image["id"].as_str().unwrap().to_string();
        let response = self
            .http
            .put(format!("{}/image/v2/images/{id}/file", self.base))
            .header("X-Auth-Token", &self.token)
            .header("Content-Type", "application/octet-stream")
            .body(std::fs::read(file).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        self.wait(&format!("/image/v2/images/{id}"), "/status", "active", 60)
            .await;
        id
    }

    pub async fn server(&self, name: &str, image: &str, flavor: &str, extra: Value) -> String {
        let mut server =
            json!({"name": name, "imageRef": image, "flavorRef": flavor, "networks": "auto"});
        for (k, v) in extra.as_object().cloned().unwrap_or_default() {
            server[k] = v;
        }
        let body = self
            .post("/compute/v2.1/servers", json!({ "server": server }))
            .await;
        body["server"]["id"].as_str().unwrap().to_string()
    }

    /// Polls until the JSON pointer reads `want`; panics after `secs`, or at once on ERROR.
    pub async fn wait(&self, path: &str, pointer: &str, want: &str, secs: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let (_, body) = self.call(Method::GET, path, None).await;
            let got = body.pointer(pointer).and_then(Value::as_str).unwrap_or("");
            if got == want {
                return body;
            }
            assert!(
                got != "ERROR" && Instant::now() < deadline,
                "{path}: {pointer} is {got:?}, not {want:?}: {body:#}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    pub async fn wait_server(&self, id: &str, status: &str, secs: u64) -> Value {
        let body = self
            .wait(
                &format!("/compute/v2.1/servers/{id}"),
                "/server/status",
                status,
                secs,
            )
            .await;
        body["server"].clone()
    }

    pub async fn wait_gone(&self, path: &str, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while self.call(Method::GET, path, None).await.0 != StatusCode::NOT_FOUND {
            assert!(Instant::now() < deadline, "{path} is still there");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Deletes a server and waits until it is gone.
    pub async fn delete_server(&self, id: &str) {
        let path = format!("/compute/v2.1/servers/{id}");
        let (status, body) = self.call(Method::DELETE, &path, None).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
        self.wait_gone(&path, 60).await;
    }

    pub async fn console(&self, id: &str) -> String {
        let body = self
            .action(id, json!({"os-getConsoleOutput": {"length": null}}))
            .await;
        body["output"].as_str().unwrap_or("").to_string()
    }

    /// Waits until the console shows `what` `count` times; returns the console.
    pub async fn wait_console(&self, id: &str, what: &str, count: usize, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let out = self.console(id).await;
            if out.matches(what).count() >= count {
                return out;
            }
            assert!(
                Instant::now() < deadline,
                "no {what:?} (x{count}) on {id}'s console:\n{out}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// The fixed IP of a server (the first of `private`).
pub fn fixed_ip(server: &Value) -> String {
    server["addresses"]["private"][0]["addr"]
        .as_str()
        .unwrap_or_else(|| panic!("no private address: {server:#}"))
        .to_string()
}

/// Reads the first bytes a TCP server sends, if it sends any within 3 s.
pub async fn banner(addr: &str, port: u16) -> Option<String> {
    let mut s = tokio::net::TcpStream::connect((addr, port)).await.ok()?;
    let mut buf = vec![0; 64];
    let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
        .await
        .ok()?
        .ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// Waits for `want` (the guest's SSH banner) on `addr:22`.
pub async fn wait_banner(addr: &str, want: &str, secs: u64) -> Duration {
    let start = Instant::now();
    loop {
        if banner(addr, 22).await.is_some_and(|b| b.contains(want)) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "no SSH banner on {addr}:22 in {secs} s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A short data directory: QMP socket paths must stay under 108 bytes.
pub fn data_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("sbq")
        .tempdir_in("/tmp")
        .unwrap()
}
