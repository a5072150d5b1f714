//! The join secret of one local run: generated when the run starts,
//! written to a file only this user can read, in a directory only this
//! user can enter, and removed with that directory when the run ends.
//! Master and workers read it from there (`--join-secret-file`), so other
//! users of the machine can neither join the master nor read the secret
//! from a command line.

use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use swarm::protocol::JoinSecret;

/// How many directory names are tried before giving up: a name is taken
/// only when another process (or a stale run with a reused pid) has it.
const DIR_ATTEMPTS: u32 = 100;

/// The run's secret file; its directory is removed on drop.
#[derive(Debug)]
pub struct RunSecret {
    /// The private directory (mode 0700) holding the file.
    dir: PathBuf,
    /// `dir/join-secret`, mode 0600.
    file: PathBuf,
}

impl RunSecret {
    /// Generates a secret and writes it under the system's temp directory.
    pub fn create() -> anyhow::Result<RunSecret> {
        Self::create_in(&std::env::temp_dir())
    }

    /// Generates a secret and writes it in a new private directory in `base`.
    pub fn create_in(base: &Path) -> anyhow::Result<RunSecret> {
        let pid = std::process::id();
        for attempt in 0..DIR_ATTEMPTS {
            let dir = base.join(format!("spotload-run-{pid}-{attempt}"));
            // Created here, never reused: a directory someone else made
            // (or a symlink) is skipped, not trusted.
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(err) => {
                    return Err(err).with_context(|| {
                        format!(
                            "cannot create a directory for the run's join secret in {}",
                            base.display()
                        )
                    })
                }
            }
            let run = RunSecret {
                file: dir.join("join-secret"),
                dir,
            };
            JoinSecret::generate()
                .write_private(&run.file)
                .with_context(|| format!("cannot write {}", run.file.display()))?;
            return Ok(run);
        }
        anyhow::bail!(
            "no free directory name for the run's join secret in {} after {DIR_ATTEMPTS} tries: remove stale spotload-run-* directories there",
            base.display()
        )
    }

    /// The file master and workers are given with `--join-secret-file`.
    pub fn file(&self) -> &Path {
        &self.file
    }
}

impl Drop for RunSecret {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn the_secret_is_private_and_gone_with_the_run() {
        let base = tempfile::tempdir().unwrap();
        let first = RunSecret::create_in(base.path()).unwrap();
        let second = RunSecret::create_in(base.path()).unwrap();
        assert_ne!(first.file(), second.file(), "a taken name is skipped");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let dir = first.file().parent().unwrap().to_path_buf();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(first.file()), 0o600);
        let a = JoinSecret::from_file(first.file()).unwrap();
        let b = JoinSecret::from_file(second.file()).unwrap();
        assert!(!a.matches(b.reveal().as_bytes()), "one secret per run");
        drop(first);
        assert!(!dir.exists());
        assert!(second.file().exists());
    }
}
