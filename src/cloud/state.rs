//! Local fleet state: `<state dir>/<fleet>/fleet.json` and the private key
//! of a key pair spotload created.
//!
//! The state is a convenience, never the truth: every command also works
//! from tags alone, so losing this directory loses nothing in the cloud.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{CloudError, Fleet, FleetName};

const FLEET_FILE: &str = "fleet.json";
/// Files spotload may leave in a fleet directory; `forget` removes only these,
/// never a whole directory, so a mistaken `--state-dir` can't delete user data.
const KNOWN_FILES: &[&str] = &[FLEET_FILE, "known_hosts", crate::web_cert::CERT_FILE];

/// The root under which each fleet has its own directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// State under `root` (`--state-dir`, or [`StateDir::default_root`]).
    pub fn new(root: impl Into<PathBuf>) -> StateDir {
        StateDir { root: root.into() }
    }

    /// `$XDG_STATE_HOME/spotload`, else `~/.local/state/spotload`.
    pub fn default_root() -> Option<PathBuf> {
        let from = |var: &str| std::env::var_os(var).filter(|v| !v.is_empty());
        if let Some(state) = from("XDG_STATE_HOME") {
            return Some(PathBuf::from(state).join("spotload"));
        }
        from("HOME").map(|home| PathBuf::from(home).join(".local/state/spotload"))
    }

    /// `<root>/<fleet>`: the fleet file, its key and its `known_hosts`.
    pub fn fleet_dir(&self, fleet: &FleetName) -> PathBuf {
        self.root.join(fleet.as_str())
    }

    /// `<root>/<fleet>/fleet.json`: the [`Fleet`] as launched.
    pub fn fleet_file(&self, fleet: &FleetName) -> PathBuf {
        self.fleet_dir(fleet).join(FLEET_FILE)
    }

    /// Where the private key of a key pair spotload creates is kept.
    pub fn key_file(&self, fleet: &FleetName) -> PathBuf {
        self.fleet_dir(fleet)
            .join(format!("{}.pem", fleet.resource_name()))
    }

    /// Writes the fleet file (atomically: a crash leaves the old one or the new).
    pub fn save(&self, fleet: &Fleet) -> Result<PathBuf, CloudError> {
        let path = self.fleet_file(&fleet.name);
        self.create_fleet_dir(&fleet.name)?;
        let json = serde_json::to_vec_pretty(fleet).map_err(|err| CloudError::State {
            what: "encode the fleet file",
            path: path.clone(),
            error: std::io::Error::other(err),
        })?;
        let partial = path.with_extension("json.partial");
        fs::write(&partial, json)
            .and_then(|()| fs::rename(&partial, &path))
            .map_err(|error| CloudError::State {
                what: "write the fleet file",
                path: path.clone(),
                error,
            })?;
        Ok(path)
    }

    /// Reads the fleet file, `None` when there is none.
    pub fn load(&self, fleet: &FleetName) -> Result<Option<Fleet>, CloudError> {
        let path = self.fleet_file(fleet);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => {
                return Err(CloudError::State {
                    what: "read the fleet file",
                    path,
                    error,
                })
            }
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|err| CloudError::State {
                what: "parse the fleet file (delete it: commands work from tags alone)",
                path,
                error: std::io::Error::other(err),
            })
    }

    /// Saves a new key pair's private key, readable by the owner only.
    pub fn save_private_key(
        &self,
        fleet: &FleetName,
        material: &str,
    ) -> Result<PathBuf, CloudError> {
        let path = self.key_file(fleet);
        self.create_fleet_dir(fleet)?;
        let write = || -> std::io::Result<()> {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&path)?;
            // mode() applies only to new files; a stale one keeps its mode otherwise.
            file.set_permissions(fs::Permissions::from_mode(0o600))?;
            file.write_all(material.as_bytes())?;
            if !material.ends_with('\n') {
                file.write_all(b"\n")?;
            }
            file.sync_all()
        };
        write().map_err(|error| CloudError::State {
            what: "save the private key to",
            path: path.clone(),
            error,
        })?;
        Ok(path)
    }

    /// Removes the fleet file, the created key and other known files, then
    /// the fleet directory if that left it empty. Returns what was removed.
    pub fn forget(&self, fleet: &FleetName) -> Result<Vec<PathBuf>, CloudError> {
        let dir = self.fleet_dir(fleet);
        let mut removed = Vec::new();
        let key = self.key_file(fleet);
        let files = KNOWN_FILES.iter().map(|name| dir.join(name));
        for path in files.chain(std::iter::once(key)) {
            match fs::remove_file(&path) {
                Ok(()) => removed.push(path),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => {
                    return Err(CloudError::State {
                        what: "remove",
                        path,
                        error,
                    })
                }
            }
        }
        // Fails harmlessly when the user keeps other files there.
        let _ = fs::remove_dir(&dir);
        Ok(removed)
    }

    fn create_fleet_dir(&self, fleet: &FleetName) -> Result<(), CloudError> {
        let dir = self.fleet_dir(fleet);
        fs::create_dir_all(&dir)
            .and_then(|()| restrict(&dir))
            .map_err(|error| CloudError::State {
                what: "create the state directory",
                path: dir,
                error,
            })
    }
}

/// The fleet directory holds a private key: owner only.
fn restrict(dir: &Path) -> std::io::Result<()> {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::{FleetKey, Instance, Role};

    fn fleet() -> Fleet {
        Fleet {
            name: FleetName::parse("demo").unwrap(),
            region: "us-east-1".into(),
            security_group_id: "sg-1".into(),
            key: FleetKey {
                name: "spotload-demo".into(),
                private_key: None,
                created: true,
            },
            instances: vec![Instance {
                id: "i-1".into(),
                role: Some(Role::Master),
                instance_type: "t3.small".into(),
                lifecycle: "spot".into(),
                state: "running".into(),
                state_reason: None,
                public_ip: Some("54.0.0.1".parse().unwrap()),
                public_dns: None,
                private_ip: Some("10.0.0.1".parse().unwrap()),
                launched_at: Some(1_700_000_000),
                availability_zone: Some("us-east-1a".into()),
                spot_request_id: None,
                key_name: None,
            }],
            launch_template_id: None,
        }
    }

    #[test]
    fn fleet_file_round_trips_and_is_forgotten() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::new(tmp.path());
        let fleet = fleet();
        assert_eq!(state.load(&fleet.name).unwrap(), None);
        state.save(&fleet).unwrap();
        assert_eq!(state.load(&fleet.name).unwrap(), Some(fleet.clone()));
        let key = state.save_private_key(&fleet.name, "KEY").unwrap();
        let mode = fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(fs::read_to_string(&key).unwrap(), "KEY\n");
        let removed = state.forget(&fleet.name).unwrap();
        assert_eq!(removed.len(), 2);
        assert!(!state.fleet_dir(&fleet.name).exists());
        assert!(state.forget(&fleet.name).unwrap().is_empty());
    }

    #[test]
    fn forget_leaves_unknown_files_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::new(tmp.path());
        let fleet = fleet();
        state.save(&fleet).unwrap();
        let mine = state.fleet_dir(&fleet.name).join("notes.txt");
        fs::write(&mine, "keep").unwrap();
        state.forget(&fleet.name).unwrap();
        assert!(mine.exists());
    }

    #[test]
    fn corrupt_fleet_file_says_what_to_do() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::new(tmp.path());
        let name = FleetName::parse("demo").unwrap();
        fs::create_dir_all(state.fleet_dir(&name)).unwrap();
        fs::write(state.fleet_file(&name), "{").unwrap();
        let err = state.load(&name).unwrap_err().to_string();
        assert!(err.contains("delete it"), "{err}");
    }
}
