//! Rule packs shipped with Lookout: alerts for hosts, PostgreSQL and Redis over the
//! exporters' metric names, and for engines instrumented with `lookout-sdk` (`engine`,
//! opt-in), each with a `runbook_url` into `docs/runbooks/`. The YAML lives in `packs/` (with promtool-format unit tests in `packs/tests/`) and is compiled
//! into the binary, so they work without any file on disk.

/// A rule pack: its name and its rule file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pack {
    /// `host`, `postgres`, `redis` or `engine`.
    pub name: &'static str,
    /// The rule file's text.
    pub text: &'static str,
}

/// Every pack, in order.
pub const PACKS: &[Pack] = &[
    Pack {
        name: "host",
        text: include_str!("../packs/host.yml"),
    },
    Pack {
        name: "postgres",
        text: include_str!("../packs/postgres.yml"),
    },
    Pack {
        name: "redis",
        text: include_str!("../packs/redis.yml"),
    },
    Pack {
        name: "engine",
        text: include_str!("../packs/engine.yml"),
    },
];

/// The pack called `name`.
pub fn get(name: &str) -> Option<Pack> {
    PACKS.iter().copied().find(|p| p.name == name)
}

/// The path a pack's groups report as their file.
pub fn display_path(name: &str) -> String {
    format!("<builtin>/{name}.yml")
}
