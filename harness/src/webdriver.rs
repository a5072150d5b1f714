//! A minimal W3C WebDriver client for Debian's headless Chromium.
//!
//! [`ChromeDriver`] starts `/usr/bin/chromedriver` on a free loopback port;
//! [`Session`] is one browser driven over WebDriver's JSON-over-HTTP
//! protocol (reqwest and serde_json): open a URL, find elements by CSS,
//! click, type, read text and attributes, run a script, take a PNG
//! screenshot. The session is deleted (and Chromium closed) on drop.
//!
//! Ours rather than fantoccini/thirtyfour: the tests use a dozen commands,
//! blocking, from plain `#[test]`s; those crates are async-only and bring
//! their own HTTP stack, for ~200 lines of JSON calls saved.
//!
//! Every call answers `Result<_, String>`: tests poll with it ("not there
//! yet" is an `Err`) and `expect` when a step must succeed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine as _;
use reqwest::blocking::Client;
use serde_json::{json, Value};

use crate::http::describe;
use crate::process::{free_port, loopback, Process, TempDir};
use crate::wait::try_wait_until;

/// Debian `chromium-driver`.
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Debian `chromium`.
const CHROMIUM: &str = "/usr/bin/chromium";
/// The key W3C WebDriver names an element reference by.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long chromedriver gets to open its port.
const DRIVER_START: Duration = Duration::from_secs(20);
/// The most one WebDriver command may take (a new session starts Chromium).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// A running chromedriver, stopped on drop.
#[derive(Debug)]
pub struct ChromeDriver {
    // Declared before `dir`: the process stops before its logs go.
    process: Process,
    dir: TempDir,
    port: u16,
}

impl ChromeDriver {
    /// Starts chromedriver on a free loopback port; panics (with its log)
    /// if it does not listen within 20 s.
    pub fn start() -> ChromeDriver {
        const TRIES: usize = 3;
        for tool in [CHROMEDRIVER, CHROMIUM] {
            assert!(
                Path::new(tool).exists(),
                "{tool} missing: run scripts/test to install chromium and chromium-driver"
            );
        }
        let dir = TempDir::new("chromedriver");
        for _ in 0..TRIES {
            let port = free_port();
            let mut cmd = Command::new(CHROMEDRIVER);
            cmd.arg(format!("--port={port}"))
                .arg("--allowed-ips=127.0.0.1")
                .arg(format!(
                    "--log-path={}",
                    dir.path().join("chromedriver.log").display()
                ));
            let mut process = Process::spawn("chromedriver", cmd, dir.path());
            process.add_log(dir.path().join("chromedriver.log"));
            match process.wait_for_port(loopback(port), DRIVER_START) {
                Ok(()) => return ChromeDriver { process, dir, port },
                Err(e) if e.contains("in use") => {
                    eprintln!("[webdriver] port {port} was taken, trying another");
                }
                Err(e) => panic!("chromedriver did not start: {e}"),
            }
        }
        panic!("chromedriver found no free port in {TRIES} tries");
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A new headless Chromium session whose profile lives in `profile_dir`.
    pub fn new_session(&self, profile_dir: &Path) -> Result<Session, String> {
        let args = vec![
            "--headless".to_string(),
            "--no-sandbox".to_string(),
            "--disable-gpu".to_string(),
            "--disable-dev-shm-usage".to_string(),
            "--disable-background-networking".to_string(),
            "--disable-component-update".to_string(),
            "--disable-sync".to_string(),
            "--no-first-run".to_string(),
            "--window-size=1440,1000".to_string(),
            format!("--user-data-dir={}", profile_dir.display()),
        ];
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": { "binary": CHROMIUM, "args": args }
                }
            }
        });
        let value = call(&self.url(), "POST", "/session", Some(&capabilities))?;
        let id = value["sessionId"]
            .as_str()
            .ok_or_else(|| format!("new session answered no sessionId: {value}"))?;
        Ok(Session {
            base: format!("{}/session/{id}", self.url()),
        })
    }

    /// chromedriver's stdout, stderr and `chromedriver.log`, labelled, for
    /// a test's failure message.
    pub fn logs(&self) -> String {
        self.process.logs()
    }

    /// The temp dir holding chromedriver's logs, kept when the test
    /// panics; a place for the Chromium profile dir of `new_session`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Headless Chromium on one page, with the page's script errors collected
/// from the moment it opened: chromedriver, the profile and the session,
/// dropped together (the session first). Derefs to its [`Session`].
#[derive(Debug)]
pub struct Browser {
    session: Session,
    _profile: TempDir,
    driver: ChromeDriver,
}

impl Browser {
    /// Starts chromedriver and Chromium and opens `url`; panics, with
    /// chromedriver's logs, when a step fails.
    pub fn open(url: &str) -> Browser {
        let driver = ChromeDriver::start();
        let profile = TempDir::new("chromium-profile");
        let session = driver
            .new_session(profile.path())
            .unwrap_or_else(|e| panic!("cannot start Chromium: {e}\n{}", driver.logs()));
        session
            .goto(url)
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
        session
            .execute(
                "window.__errors = []; window.addEventListener('error', \
                 function (e) { window.__errors.push(String(e.message)); });",
                &[],
            )
            .unwrap_or_else(|e| panic!("install an error collector: {e}"));
        Browser {
            session,
            _profile: profile,
            driver,
        }
    }

    /// The script errors the page raised since it opened (a JSON array).
    pub fn script_errors(&self) -> Value {
        self.session
            .execute("return window.__errors;", &[])
            .unwrap_or_else(|e| panic!("read the error collector: {e}"))
    }

    /// chromedriver's logs, for a failure message.
    pub fn logs(&self) -> String {
        self.driver.logs()
    }
}

impl std::ops::Deref for Browser {
    type Target = Session;

    fn deref(&self) -> &Session {
        &self.session
    }
}

/// A reference to an element of the current page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element(String);

/// One browser session; deleted on drop.
#[derive(Debug)]
pub struct Session {
    /// `http://127.0.0.1:PORT/session/ID`.
    base: String,
}

impl Session {
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
        call(&self.base, method, path, body)
    }

    /// Opens `url` and waits for the page to load.
    pub fn goto(&self, url: &str) -> Result<(), String> {
        self.call("POST", "/url", Some(&json!({ "url": url })))
            .map(drop)
    }

    /// The first element matching `css`.
    pub fn find(&self, css: &str) -> Result<Element, String> {
        let value = self.call(
            "POST",
            "/element",
            Some(&json!({"using": "css selector", "value": css})),
        )?;
        element_ref(&value).ok_or_else(|| format!("{css}: no element reference in {value}"))
    }

    /// Every element matching `css` (maybe none).
    pub fn find_all(&self, css: &str) -> Result<Vec<Element>, String> {
        let value = self.call(
            "POST",
            "/elements",
            Some(&json!({"using": "css selector", "value": css})),
        )?;
        let list = value
            .as_array()
            .ok_or_else(|| format!("{css}: expected a list of elements, got {value}"))?;
        list.iter()
            .map(|v| element_ref(v).ok_or_else(|| format!("{css}: bad element {v}")))
            .collect()
    }

    /// Clicks the element, as a user would (it must be visible).
    pub fn click(&self, element: &Element) -> Result<(), String> {
        self.call(
            "POST",
            &format!("/element/{}/click", element.0),
            Some(&json!({})),
        )
        .map(drop)
    }

    /// Empties an editable element (an `<input>` or `<textarea>`).
    pub fn clear(&self, element: &Element) -> Result<(), String> {
        self.call(
            "POST",
            &format!("/element/{}/clear", element.0),
            Some(&json!({})),
        )
        .map(drop)
    }

    /// Types `text` into the element.
    pub fn send_keys(&self, element: &Element, text: &str) -> Result<(), String> {
        self.call(
            "POST",
            &format!("/element/{}/value", element.0),
            Some(&json!({ "text": text })),
        )
        .map(drop)
    }

    /// Clears the element, then types `text`.
    pub fn fill(&self, css: &str, text: &str) -> Result<(), String> {
        let element = self.find(css)?;
        self.clear(&element)?;
        self.send_keys(&element, text)
    }

    /// The element's rendered text (empty when it is hidden).
    pub fn text(&self, element: &Element) -> Result<String, String> {
        let value = self.call("GET", &format!("/element/{}/text", element.0), None)?;
        value
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("element text is not a string: {value}"))
    }

    /// The text of the first element matching `css`.
    pub fn text_of(&self, css: &str) -> Result<String, String> {
        self.text(&self.find(css)?)
    }

    /// An attribute's value, `None` when the element has no such attribute.
    pub fn attribute(&self, element: &Element, name: &str) -> Result<Option<String>, String> {
        let value = self.call(
            "GET",
            &format!("/element/{}/attribute/{name}", element.0),
            None,
        )?;
        Ok(value.as_str().map(str::to_string))
    }

    /// Whether the element is rendered visibly on the page.
    pub fn is_displayed(&self, element: &Element) -> Result<bool, String> {
        let value = self.call("GET", &format!("/element/{}/displayed", element.0), None)?;
        value
            .as_bool()
            .ok_or_else(|| format!("displayed is not a bool: {value}"))
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the
    /// page and returns what it returns.
    pub fn execute(&self, script: &str, args: &[Value]) -> Result<Value, String> {
        self.call(
            "POST",
            "/execute/sync",
            Some(&json!({ "script": script, "args": args })),
        )
    }

    /// The visible page as PNG bytes.
    pub fn screenshot_png(&self) -> Result<Vec<u8>, String> {
        let value = self.call("GET", "/screenshot", None)?;
        let text = value
            .as_str()
            .ok_or_else(|| format!("screenshot is not a string: {value}"))?;
        base64_decode(text)
    }

    /// Saves a screenshot to `path`, creating its directory.
    pub fn save_screenshot(&self, path: &Path) -> Result<PathBuf, String> {
        let png = self.screenshot_png()?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        std::fs::write(path, png).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(path.to_path_buf())
    }

    /// Polls `check` until it answers `Ok(Some(_))`; the last error or
    /// "still None" when `limit` passes.
    pub fn wait_for<T>(
        &self,
        limit: Duration,
        what: &str,
        mut check: impl FnMut(&Session) -> Result<Option<T>, String>,
    ) -> Result<T, String> {
        let mut last = String::from("condition never held");
        try_wait_until(limit, || match check(self) {
            Ok(found) => found,
            Err(e) => {
                last = e;
                None
            }
        })
        .ok_or_else(|| format!("timed out after {limit:?} waiting for {what}: {last}"))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Err(e) = call(&self.base, "DELETE", "", None) {
            eprintln!("[webdriver] could not delete the session: {e}");
        }
    }
}

/// The client for WebDriver commands: a new session starts Chromium,
/// which takes longer than the harness's other requests may.
fn client() -> &'static Client {
    static CLIENT: OnceLock<Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        Client::builder()
            .timeout(COMMAND_TIMEOUT)
            .build()
            .expect("cannot build reqwest's blocking client")
    })
}

/// One WebDriver command: the answer's `value`, or its error as text.
fn call(base: &str, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
    let url = format!("{base}{path}");
    let verb = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
    let mut request = client().request(verb, &url);
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request
        .send()
        .map_err(|e| format!("{method} {url}: {}", describe(&e)))?;
    let status = response.status().as_u16();
    let answer = response
        .text()
        .map_err(|e| format!("{method} {url}: {}", describe(&e)))?;
    let parsed: Value = serde_json::from_str(&answer)
        .map_err(|e| format!("{method} {url}: answer {status} is not JSON ({e}): {answer}"))?;
    let value = parsed.get("value").cloned().unwrap_or(Value::Null);
    if status != 200 {
        let error = value["error"].as_str().unwrap_or("unknown error");
        let message = value["message"].as_str().unwrap_or_default();
        let first_line = message.lines().next().unwrap_or_default();
        return Err(format!("{method} {path}: {status} {error}: {first_line}"));
    }
    Ok(value)
}

fn element_ref(value: &Value) -> Option<Element> {
    value[ELEMENT_KEY]
        .as_str()
        .map(|id| Element(id.to_string()))
}

/// Standard base64 (with or without padding) → bytes.
fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    let clean: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(clean.trim_end_matches('='))
        .map_err(|e| format!("not base64: {e}"))
}
