//! Where a fleet's member list comes from, behind one small trait: a static list, or the
//! addresses a DNS name resolves to (a Kubernetes headless Service). No gossip or election:
//! the infrastructure that runs the nodes already knows who they are.

use std::collections::BTreeSet;

use async_trait::async_trait;

/// A source of the fleet's member ids (the addresses members advertise).
///
/// Contract: `members` returns every current member, this node included when it is one, sorted
/// and without duplicates; an error means the source could not be read now (the caller keeps
/// the last list it had), never an empty fleet.
#[async_trait]
pub trait Membership: Send + Sync {
    async fn members(&self) -> Result<Vec<String>, String>;

    /// What the source is, for logs.
    fn describe(&self) -> String;
}

/// `--peers a,b,c`.
pub struct StaticMembers(Vec<String>);

impl StaticMembers {
    pub fn new(members: Vec<String>) -> StaticMembers {
        let unique: BTreeSet<String> = members.into_iter().collect();
        StaticMembers(unique.into_iter().collect())
    }
}

#[async_trait]
impl Membership for StaticMembers {
    async fn members(&self) -> Result<Vec<String>, String> {
        Ok(self.0.clone())
    }

    fn describe(&self) -> String {
        format!("--peers {}", self.0.join(","))
    }
}

/// `--peers-dns name:port`: every address `name` resolves to (the system resolver, so
/// `/etc/hosts` and the cluster's search domains apply), each with `port`.
pub struct DnsMembers {
    pub name: String,
    pub port: u16,
}

#[async_trait]
impl Membership for DnsMembers {
    async fn members(&self) -> Result<Vec<String>, String> {
        let found = tokio::net::lookup_host((self.name.as_str(), self.port))
            .await
            .map_err(|err| format!("resolving {}: {err}", self.name))?;
        let unique: BTreeSet<String> = found.map(|address| address.to_string()).collect();
        if unique.is_empty() {
            return Err(format!("{} resolves to no address", self.name));
        }
        Ok(unique.into_iter().collect())
    }

    fn describe(&self) -> String {
        format!("--peers-dns {}:{}", self.name, self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn static_members_are_sorted_and_unique() {
        let members = StaticMembers::new(vec!["b:1".into(), "a:1".into(), "b:1".into()]);
        assert_eq!(members.members().await.unwrap(), vec!["a:1", "b:1"]);
    }

    #[tokio::test]
    async fn dns_members_are_the_resolved_addresses_with_the_port() {
        let members = DnsMembers {
            name: "localhost".into(),
            port: 7001,
        };
        let found = members.members().await.unwrap();
        assert!(
            found.iter().any(|member| member == "127.0.0.1:7001"),
            "{found:?}"
        );
        let missing = DnsMembers {
            name: "no-such-host.invalid".into(),
            port: 7001,
        };
        assert!(missing.members().await.is_err());
    }
}
