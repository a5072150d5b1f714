//! The HTTP clients the worker's users make their requests with.
//!
//! Goose builds a client per user from its own settings, and reqwest sets
//! up TLS for every client it builds: its platform verifier reads and
//! parses the system's root certificates each time. With thousands of users
//! that is most of a spawn's CPU, and it stalls the runtime long enough for
//! the worker to miss heartbeats (5,000 users at 1,000/s lost their master
//! on a 2-core machine). So the worker sets up TLS once, and gives each user
//! a client of its own (its own pool and cookie jar, as Locust's users have)
//! that shares that one verifier, or one client for every user with
//! `--shared-client`.
//!
//! How TLS trusts the target ([`TargetTls`]: the system's roots, a
//! `--ca-cert`, or `--accept-invalid-certs`) is part of that one setup: a
//! spawn from the master may bring another, and then the setup is made
//! anew, once, for the users started from then on.
//!
//! Goose is told to share one client (built once, never used for a
//! request); each user's first on-start transaction, added to every scenario
//! ahead of the load test's own (a log-in needs the user's cookie jar), puts
//! the user's client in place — goose's own way of giving a user another
//! client (`GooseUser::set_client_builder`), without goose's build.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use goose::goose::TransactionError;
use goose::prelude::{GooseUser, Scenario, Transaction, TransactionResult};
use rustls::client::Resumption;

use super::{gcd, transaction_fn};
use crate::target_tls::TargetTls;

/// Goose's default request timeout, kept.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// TLS session tickets a user keeps (per server name): a user talks to a
/// handful of hosts at most.
const USER_TLS_SESSIONS: usize = 8;

/// The name of the on-start transaction that gives a user its client.
const INSTALL_NAME: &str = "swarm: HTTP client";

/// The settings of every client the worker's users get (and of
/// `scripts/compare-load`'s bare reqwest loop): goose's defaults (its user
/// agent replaced, a 60 s timeout, gzip accepted as Locust's clients accept
/// it) without the environment's proxy lookup; Nagle off. `cookies`: a
/// cookie jar of its own.
pub fn user_client_builder(user_agent: &str, cookies: bool) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(user_agent)
        .timeout(REQUEST_TIMEOUT)
        .gzip(true)
        .no_proxy()
        .tcp_nodelay(true)
        .cookie_store(cookies)
}

/// Why the users' clients could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum UserClientError {
    /// The TLS setup failed (the system's roots, or a CA rustls refused).
    #[error("cannot set up HTTPS for the users, trusting {trust}: {error}")]
    Tls {
        /// What the users were to trust.
        trust: String,
        /// rustls's reason.
        error: rustls::Error,
    },
    /// reqwest refused the settings.
    #[error("cannot build an HTTP client: {0}")]
    Build(#[from] reqwest::Error),
}

/// Makes each user's client: one TLS setup, shared.
#[derive(Debug)]
pub struct UserClients {
    user_agent: String,
    /// `--shared-client`: one client for every user.
    shared_mode: bool,
    /// The setup users get their clients from; replaced (never changed in
    /// place) when a spawn brings another trust.
    setup: RwLock<Arc<Setup>>,
}

/// One TLS setup and what was built from it.
#[derive(Debug)]
struct Setup {
    /// What it trusts.
    trust: TargetTls,
    /// The TLS configuration every client starts from (its verifier, with
    /// the system's roots, loaded once).
    tls: rustls::ClientConfig,
    /// With `--shared-client`: the one client every user gets.
    shared: Option<reqwest::Client>,
}

impl UserClients {
    /// Sets TLS up once, trusting `trust`; `shared`: one client (no
    /// cookies) for every user, else a client and cookie jar each.
    pub fn new(
        user_agent: &str,
        shared: bool,
        trust: &TargetTls,
    ) -> Result<UserClients, UserClientError> {
        let setup = Setup::new(user_agent, shared, trust)?;
        Ok(UserClients {
            user_agent: user_agent.to_string(),
            shared_mode: shared,
            setup: RwLock::new(Arc::new(setup)),
        })
    }

    /// Trusts `trust` from now on: TLS is set up anew (once) when it
    /// differs. Returns whether it did; users that have their client keep it.
    pub fn set_trust(&self, trust: &TargetTls) -> Result<bool, UserClientError> {
        if self.current().trust == *trust {
            return Ok(false);
        }
        let setup = Arc::new(Setup::new(&self.user_agent, self.shared_mode, trust)?);
        if let Ok(mut current) = self.setup.write() {
            *current = setup;
        }
        Ok(true)
    }

    fn current(&self) -> Arc<Setup> {
        match self.setup.read() {
            Ok(setup) => setup.clone(),
            // A writer only swaps an Arc: nothing half-done to see.
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// A client for one user: the shared one, or a new one with its own
    /// pool and cookie jar.
    pub fn for_user(&self) -> Result<reqwest::Client, reqwest::Error> {
        let setup = self.current();
        match &setup.shared {
            Some(client) => Ok(client.clone()),
            None => build(&setup.tls, &self.user_agent, true),
        }
    }

    /// `scenario` with an on-start transaction first that gives each user
    /// its client. Sequenced first (goose runs sequenced on-start
    /// transactions before the others, and among equals the first
    /// registered), weighted so that it runs once and changes no other
    /// transaction's share.
    pub fn install(self: &Arc<Self>, mut scenario: Scenario) -> Scenario {
        let theirs = std::mem::take(&mut scenario.transactions);
        let weight = theirs
            .iter()
            .map(|t| t.weight)
            .reduce(gcd)
            .unwrap_or(1)
            .max(1);
        let clients = self.clone();
        let install = Transaction::new(Arc::new(transaction_fn(move |user| {
            let client = clients.for_user();
            Box::pin(async move { give_client(user, client) })
        })))
        .set_name(INSTALL_NAME)
        .set_on_start()
        .set_sequence(1)
        .set_weight(weight);
        let Ok(install) = install else {
            // A weight of at least 1 is always accepted.
            scenario.transactions = theirs;
            return scenario;
        };
        scenario = scenario.register_transaction(install);
        for transaction in theirs {
            scenario = scenario.register_transaction(transaction);
        }
        scenario
    }
}

impl Setup {
    fn new(user_agent: &str, shared: bool, trust: &TargetTls) -> Result<Setup, UserClientError> {
        let tls = trust
            .client_config()
            .map_err(|error| UserClientError::Tls {
                trust: trust.describe(),
                error,
            })?;
        let shared = if shared {
            Some(build(&tls, user_agent, false)?)
        } else {
            // Proves the settings build before any user needs them.
            build(&tls, user_agent, true)?;
            None
        };
        Ok(Setup {
            trust: trust.clone(),
            tls,
            shared,
        })
    }
}

/// A client from the shared TLS configuration, with a session cache of its
/// own (a user resumes its own sessions when it reconnects).
fn build(
    tls: &rustls::ClientConfig,
    user_agent: &str,
    cookies: bool,
) -> Result<reqwest::Client, reqwest::Error> {
    let mut tls = tls.clone();
    tls.resumption = Resumption::in_memory_sessions(USER_TLS_SESSIONS);
    user_client_builder(user_agent, cookies)
        .tls_backend_preconfigured(tls)
        .build()
}

/// Puts `client` in `user`'s hands; a client that could not be built is a
/// transaction error (the user keeps goose's shared client, without cookies).
fn give_client(
    user: &mut GooseUser,
    client: Result<reqwest::Client, reqwest::Error>,
) -> TransactionResult {
    match client {
        Ok(client) => {
            user.client = client;
            Ok(())
        }
        Err(err) => Err(Box::new(TransactionError::Custom(format!(
            "could not build this user's HTTP client: {err}"
        )))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use goose::prelude::{scenario, transaction};

    async fn page(_user: &mut GooseUser) -> TransactionResult {
        Ok(())
    }

    #[test]
    fn install_goes_first_and_keeps_the_weights() {
        let clients =
            Arc::new(UserClients::new("test", false, &TargetTls::default()).expect("clients"));
        let scenario = scenario!("Site")
            .register_transaction(transaction!(page).set_weight(4).unwrap())
            .register_transaction(transaction!(page).set_on_start().set_sequence(1))
            .register_transaction(transaction!(page).set_weight(6).unwrap());
        let scenario = clients.install(scenario);
        assert_eq!(scenario.transactions.len(), 4);
        let first = &scenario.transactions[0];
        assert!(first.on_start);
        assert_eq!(first.sequence, 1);
        assert_eq!(first.weight, 1, "gcd of 4, 1 and 6");
        for (i, t) in scenario.transactions.iter().enumerate() {
            assert_eq!(t.transactions_index, i);
        }
        assert_eq!(scenario.transactions[1].weight, 4);
        assert_eq!(scenario.transactions[3].weight, 6);
    }

    #[test]
    fn a_shared_client_is_one_client() {
        let clients = UserClients::new("test", true, &TargetTls::default()).expect("clients");
        assert!(clients.current().shared.is_some());
        assert!(clients.for_user().is_ok());
    }

    #[test]
    fn another_trust_sets_tls_up_anew_once() {
        let clients = UserClients::new("test", true, &TargetTls::default()).expect("clients");
        let before = clients.current();
        assert!(!clients
            .set_trust(&TargetTls::default())
            .expect("same trust"));
        assert!(Arc::ptr_eq(&before, &clients.current()), "nothing rebuilt");
        let any = TargetTls {
            ca: None,
            accept_invalid_certs: true,
        };
        assert!(clients.set_trust(&any).expect("another trust"));
        assert_eq!(clients.current().trust, any);
        assert!(!clients.set_trust(&any).expect("the same again"));
    }
}
