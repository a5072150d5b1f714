//! Where `deploy` and `ramp` find the hosts (`--inventory`,
//! `--connect-via`): one flag group, flattened into both commands, each
//! under its own help heading.

use std::path::PathBuf;

use clap::Args;

use crate::provision::ConnectVia;

/// The hosts: listed in an inventory file, or the fleet's instances at
/// their public or private addresses.
#[derive(Debug, Clone, Args)]
pub struct HostsArgs {
    /// The hosts in FILE (`ADDRESS[:PORT] USER KEY ROLE [PRIVATE_ADDRESS]`
    /// per line) instead of an EC2 fleet: deploy sets them up, ramp drives
    /// their master.
    #[arg(long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// Reach fleet instances at their public or private addresses (private
    /// when spotload runs inside the VPC).
    #[arg(long, value_enum, default_value_t = ConnectVia::Public)]
    pub connect_via: ConnectVia,
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;
    use crate::cli::{Cli, Command};

    fn hosts(args: &[&str]) -> Result<HostsArgs, clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once("spotload").chain(args.iter().copied()))?;
        Ok(match cli.command {
            Command::Deploy(deploy) => deploy.hosts,
            Command::Ramp(ramp) => ramp.hosts,
            other => panic!("not deploy or ramp: {other:?}"),
        })
    }

    #[test]
    fn deploy_and_ramp_read_the_same_flags() {
        for command in ["deploy", "ramp"] {
            let given = hosts(&[
                command,
                "--inventory",
                "hosts.txt",
                "--connect-via",
                "private",
            ])
            .expect(command);
            assert_eq!(
                given.inventory,
                Some(PathBuf::from("hosts.txt")),
                "{command}"
            );
            assert_eq!(given.connect_via, ConnectVia::Private, "{command}");
            let default = hosts(&[command]).expect(command);
            assert_eq!(default.inventory, None, "{command}");
            assert_eq!(default.connect_via, ConnectVia::Public, "{command}");
        }
    }

    #[test]
    fn ramp_takes_its_master_from_a_url_or_an_inventory_not_both() {
        let err = hosts(&["ramp", "--master", "https://m:8089", "--inventory", "h.txt"])
            .expect_err("both");
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn both_helps_show_the_flags_under_their_own_heading() {
        Cli::command().debug_assert();
        for (command, heading) in [("deploy", "Deploy:"), ("ramp", "Master:")] {
            let mut cli = Cli::command();
            let help = cli
                .find_subcommand_mut(command)
                .expect(command)
                .render_long_help()
                .to_string();
            let section = help.split(heading).nth(1).expect(heading);
            for flag in ["--inventory <FILE>", "--connect-via <CONNECT_VIA>"] {
                assert!(section.contains(flag), "{flag} under {heading} in {help}");
            }
        }
    }
}
