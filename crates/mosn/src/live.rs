//! The config a running server serves, and its changes without a restart: a reload of the config
//! file (`mosn reload -c FILE`, or SIGUSR2), and what extensions add (the Dubbo registry's
//! clusters and routes). Both go through the same steps: the new JSON is parsed and validated as
//! at start, compiled against the running snapshot (`Rerouter`), and only then published; a bad
//! config changes nothing and its JSON-path error is logged.
//!
//! What a running server takes: clusters, hosts, routes, and listeners' stream filters, protocols,
//! timeouts and TLS (for new connections). Adding, removing, renaming or moving a listener is
//! refused; `admin`, `metrics`, `pid`, `extends`, `processor` and the error log take effect at the
//! next start (a warning says so).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde_json::Value;

/// The running config: the file's JSON plus the registry's services.
pub struct Live {
    state: Mutex<State>,
    dir: Option<PathBuf>,
    rerouter: mosn_proxy::server::Rerouter,
    dump: Arc<Mutex<Value>>,
}

struct State {
    base: Value,
    services: BTreeMap<String, Vec<SocketAddr>>,
}

/// Keys whose change needs a restart, as JSON pointers.
const RESTART_KEYS: &[&str] = &[
    "/admin",
    "/metrics",
    "/pid",
    "/extends",
    "/servers/0/processor",
    "/servers/0/default_log_path",
    "/servers/0/default_log_level",
];

impl Live {
    /// The running config `loaded` (read from `file`, when from a file); `dump` is the admin
    /// API's config dump, kept up to date.
    pub fn new(
        loaded: &mosn_config::Loaded,
        file: Option<&std::path::Path>,
        rerouter: mosn_proxy::server::Rerouter,
        dump: Arc<Mutex<Value>>,
    ) -> Live {
        Live {
            state: Mutex::new(State {
                base: loaded.raw.clone(),
                services: BTreeMap::new(),
            }),
            dir: file.and_then(|p| p.parent()).map(PathBuf::from),
            rerouter,
            dump,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Parses, compiles and publishes the composition of `base` and `services`.
    fn apply(
        &self,
        base: &Value,
        services: &BTreeMap<String, Vec<SocketAddr>>,
    ) -> Result<(), String> {
        let v = crate::dubbo_registry::with_services(base, services);
        let mut loaded = mosn_config::from_value(&v).map_err(|e| e.to_string())?;
        if let Some(d) = &self.dir {
            mosn_config::resolve_paths(&mut loaded.config, d);
        }
        self.rerouter
            .apply(&loaded.config)
            .map_err(|e| e.to_string())?;
        let mut shown = v;
        mosn_admin::api::redact(&mut shown);
        *self.dump.lock().unwrap_or_else(|e| e.into_inner()) = shown;
        Ok(())
    }

    /// Takes a new version of the config file (already parsed and validated as `loaded`).
    ///
    /// Errors: the new config cannot run on this server (listeners changed, a TLS file missing);
    /// nothing changed then.
    pub fn reload(&self, loaded: &mosn_config::Loaded) -> Result<(), String> {
        let mut st = self.lock();
        self.apply(&loaded.raw, &st.services)?;
        for key in RESTART_KEYS {
            if st.base.pointer(key) != loaded.raw.pointer(key) {
                tracing::warn!(
                    key = &key[1..],
                    "reload: this change takes effect at the next start"
                );
            }
        }
        st.base = loaded.raw.clone();
        Ok(())
    }

    /// Takes the registry's services.
    pub fn set_services(&self, services: &BTreeMap<String, Vec<SocketAddr>>) {
        let mut st = self.lock();
        match self.apply(&st.base, services) {
            Ok(()) => {
                st.services = services.clone();
                tracing::info!(
                    services = services.len(),
                    hosts = services.values().map(Vec::len).sum::<usize>(),
                    "dubbo_registry: clusters and routes applied"
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "dubbo_registry: cannot apply clusters and routes")
            }
        }
    }
}

impl mosn_discovery::dubbo::Routing for Live {
    fn apply(&self, services: &BTreeMap<String, Vec<SocketAddr>>) {
        self.set_services(services)
    }
}
