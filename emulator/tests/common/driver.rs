//! Drives the sans-IO heart directly: requests without sockets, on a frozen clock.

use bytes::Bytes;
use dap_emulator::heart::{Heart, Listener, Reply};
use dap_emulator::{EmulatorConfig, Record};
use serde_json::Value;

/// 2026-01-01T00:00:00Z.
pub const FROZEN_MS: i64 = 1_767_225_600_000;

pub struct Driver {
    pub heart: Heart,
    token: std::cell::RefCell<String>,
}

impl Driver {
    /// A heart on a frozen clock (unless the config sets one), logged in.
    pub fn new(mut config: EmulatorConfig) -> Self {
        config.frozen_clock_ms.get_or_insert(FROZEN_MS);
        let heart = Heart::new(
            config,
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        );
        let d = Self {
            heart,
            token: std::cell::RefCell::new(String::new()),
        };
        d.login();
        d
    }

    pub fn login(&self) {
        let r = self.send(
            Listener::Api,
            "POST",
            "/ids/auth/login",
            &[
                (
                    "Authorization",
                    &super::basic(
                        dap_emulator::DEMO_CLIENT_ID,
                        dap_emulator::DEMO_CLIENT_SECRET,
                    ),
                ),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            b"grant_type=client_credentials",
        );
        assert_eq!(r.status(), 200);
        *self.token.borrow_mut() = r.json()["access_token"].as_str().unwrap().to_owned();
    }

    pub fn send(
        &self,
        listener: Listener,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Reply {
        let mut req = http::Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Some(Bytes::copy_from_slice(body))).unwrap();
        self.heart.handle(listener, req, 0)
    }

    fn dap(&self, method: &str, path: &str, body: &str) -> Reply {
        let auth = format!("Bearer {}", self.token.borrow());
        self.send(
            Listener::Api,
            method,
            path,
            &[super::UA, ("Authorization", &auth)],
            body.as_bytes(),
        )
    }

    pub fn get(&self, path: &str) -> Reply {
        self.dap("GET", path, "")
    }

    pub fn post(&self, path: &str, body: &str) -> Reply {
        self.dap("POST", path, body)
    }

    /// A control request.
    pub fn control(&self, method: &str, path: &str, body: &str) -> Reply {
        self.send(Listener::Api, method, path, &[], body.as_bytes())
    }

    pub fn query(&self, ns: &str, table: &str, body: &str) -> Reply {
        self.post(&format!("/dap/query/{ns}/table/{table}/data"), body)
    }

    /// A query that completes at once (the default config); its job JSON.
    pub fn job(&self, ns: &str, table: &str, body: &str) -> Value {
        let r = self.query(ns, table, body);
        assert_eq!(r.status(), 200, "{}", String::from_utf8_lossy(&r.body()));
        r.json()
    }

    pub fn urls(&self, job: &Value) -> Vec<String> {
        let ids = super::object_ids(job);
        let r = self.post("/dap/object/url", &Value::Array(ids.clone()).to_string());
        assert_eq!(r.status(), 200);
        super::urls_in(&r.json(), &ids)
    }

    /// Downloads a pre-signed URL from the storage listener.
    pub fn download(&self, url: &str, headers: &[(&str, &str)]) -> Reply {
        let target = &url[url.find("/output/").unwrap()..];
        self.send(Listener::Storage, "GET", target, headers, b"")
    }

    /// Downloads and decompresses every object of a job.
    pub fn contents(&self, job: &Value) -> Vec<String> {
        self.urls(job)
            .iter()
            .map(|u| {
                let r = self.download(u, &[]);
                assert_eq!(r.status(), 200);
                String::from_utf8(super::gunzip(&r.body()).unwrap()).unwrap()
            })
            .collect()
    }

    /// Moves the clock forward and logs in again (the token may have expired).
    pub fn advance_secs(&self, s: i64) {
        self.heart.advance(s * 1000);
        self.login();
    }

    pub fn now_ms(&self) -> i64 {
        self.heart.now_ms(0)
    }
}

/// Records as the JSON values a jsonl export holds.
pub fn as_json(records: &[Record]) -> Vec<Value> {
    records.iter().map(Record::to_json).collect()
}

/// The JSON values of the lines of jsonl exports.
pub fn jsonl(files: &[String]) -> Vec<Value> {
    files
        .iter()
        .flat_map(|f| f.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()))
        .collect()
}
