//! `tranzcast cluster`: the operator enrols and retires nodes and edges.
//!
//! `add-member` mints a member credential offline from the origin's config
//! (its `member_key`), so enrolling needs no running origin and the origin
//! stores no credential. `retire` asks the running origin to refuse every
//! credential of a name issued until now.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use tranzcast_proto::member::{self, MemberRole};

#[derive(clap::Subcommand, Debug)]
pub(crate) enum ClusterCommand {
    /// Mint the credential a node or an edge joins with (its `member_credential`),
    /// from the origin's config. Prints it once; keep it secret.
    AddMember {
        /// The member's name (1..=64 of a-z, A-Z, 0-9, '-', '_'); its config's `name`.
        name: String,
        /// node or edge: the only role it may join as.
        #[arg(long)]
        role: String,
        /// The origin's TOML config (for its member_key).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Override an origin config key: --set key.path=value (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Retire a member at the running origin: every credential of that name
    /// issued until now is refused and its record removed.
    Retire {
        /// The member's name.
        name: String,
        /// The origin's URL (https://).
        #[arg(long)]
        origin: String,
        /// The origin's storefront token (or TRANZCAST_STOREFRONT_TOKEN).
        #[arg(long, env = "TRANZCAST_STOREFRONT_TOKEN", hide_env_values = true)]
        token: String,
        /// CA certificate (PEM) to trust for the origin.
        #[arg(long)]
        ca: PathBuf,
    },
}

pub(crate) fn run(c: ClusterCommand) -> Result<()> {
    match c {
        ClusterCommand::AddMember { name, role, config, set } => {
            let role = MemberRole::parse(&role).with_context(|| format!("--role {role:?}: node or edge"))?;
            if !member::valid_name(&name) {
                bail!("member name {name:?}: 1..=64 of a-z, A-Z, 0-9, '-', '_'");
            }
            let origin: tranzcast_config::OriginConfig = tranzcast_config::load(config.as_deref(), &set)?;
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as u64;
            let credential = member::issue(origin.member_key.as_bytes(), &name, role, now)?;
            println!("{credential}");
            eprintln!(
                "set it as member_credential in {name}'s config (or TRANZCAST_EDGE__MEMBER_CREDENTIAL); role = \"{}\"",
                role.as_str()
            );
            Ok(())
        }
        ClusterCommand::Retire { name, origin, token, ca } => {
            if !member::valid_name(&name) {
                bail!("member name {name:?}: 1..=64 of a-z, A-Z, 0-9, '-', '_'");
            }
            let origin = origin.trim_end_matches('/');
            if !origin.starts_with("https://") {
                bail!("--origin must be an https:// URL");
            }
            let ca = std::fs::read(&ca).with_context(|| format!("cannot read {}", ca.display()))?;
            let http = tranzcast_net::client::https(&ca)?;
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(async {
                let req = http.post(format!("{origin}/v1/cluster/members/{name}/retire")).bearer_auth(token.trim());
                let r = tokio::time::timeout(std::time::Duration::from_secs(30), req.send())
                    .await
                    .context("the origin did not answer within 30 s")?
                    .with_context(|| format!("cannot reach {origin}"))?;
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                if !status.is_success() {
                    bail!("the origin refused ({status}): {text}");
                }
                println!("{text}");
                Ok(())
            })
        }
    }
}
