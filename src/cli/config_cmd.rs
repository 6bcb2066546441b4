//! `orderload config example|check`: print a commented example, or validate the configuration.

use super::Cli;
use crate::exit_codes;

#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub action: ConfigAction,
}

#[derive(Debug, clap::Subcommand)]
pub enum ConfigAction {
    /// Print a commented example orderload.toml.
    Example,
    /// Load the configuration (file + environment + flags) and report problems.
    Check,
}

pub fn run(cli: &Cli, args: &ConfigArgs) -> anyhow::Result<u8> {
    match args.action {
        ConfigAction::Example => {
            super::print_stdout(crate::config::EXAMPLE)?;
            Ok(exit_codes::OK)
        }
        ConfigAction::Check => {
            let ctx = super::Context::load(cli)?;
            super::print_stdout(&format!(
                "configuration OK: database {}, {} channel(s), target {}\n",
                ctx.config.database_url,
                ctx.config.channels.len(),
                ctx.config
                    .target
                    .as_ref()
                    .map(|t| t.url.as_str())
                    .unwrap_or("(none)")
            ))?;
            Ok(exit_codes::OK)
        }
    }
}
