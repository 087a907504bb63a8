//! The config a running server serves, and its changes without a restart: a reload of the config
//! file (`mosn reload -c FILE`, or SIGUSR2), what the Dubbo registry adds (clusters and routes),
//! and what an xDS control plane sends (listeners, routes, clusters). All go through the same
//! steps: the composed JSON is parsed and validated as at start, compiled against the running
//! snapshot (`Rerouter`), and only then published; a bad config changes nothing and its JSON-path
//! error is logged (and, for xDS, NACKed).
//!
//! What a running server takes: clusters, hosts, routes, listeners added and removed (a removed
//! one drains), and listeners' stream filters, protocols, timeouts and TLS (for new connections).
//! Access logs of listeners added at run time, `admin`, `metrics`, `pid`, `extends`, `processor`
//! and the error log take effect at the next start (a warning says so).

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
    xds: Option<mosn_xds::Translated>,
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
                xds: None,
            }),
            dir: file.and_then(|p| p.parent()).map(PathBuf::from),
            rerouter,
            dump,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Parses, compiles and publishes the composition of `base`, `services` and `xds`.
    fn publish(
        &self,
        base: &Value,
        services: &BTreeMap<String, Vec<SocketAddr>>,
        xds: Option<&mosn_xds::Translated>,
    ) -> Result<(), Failure> {
        let v = crate::dubbo_registry::with_services(base, services);
        let (v, origin) = match xds {
            Some(t) => crate::xds::compose(v, t),
            None => (v, crate::xds::Origin::default()),
        };
        let mut loaded = mosn_config::from_value(&v).map_err(|e| Failure {
            culprit: origin.culprit(&e.path),
            message: e.to_string(),
        })?;
        if let Some(d) = &self.dir {
            mosn_config::resolve_paths(&mut loaded.config, d);
        }
        self.rerouter.apply(&loaded.config).map_err(|e| Failure {
            culprit: e.listener().and_then(|name| origin.listener(name)),
            message: e.to_string(),
        })?;
        let mut shown = v;
        mosn_admin::api::redact(&mut shown);
        *self.dump.lock().unwrap_or_else(|e| e.into_inner()) = shown;
        Ok(())
    }

    /// The effective config without what xDS sent (which the new process of a hot upgrade gets
    /// from its own control plane): the file's, with the registry's services (what
    /// `inherit_old_mosnconfig` sends; secrets not redacted).
    pub fn effective(&self) -> Value {
        let st = self.lock();
        crate::dubbo_registry::with_services(&st.base, &st.services)
    }

    /// Takes a new version of the config file (already parsed and validated as `loaded`).
    ///
    /// Errors: the new config cannot run on this server (listeners changed, a TLS file missing);
    /// nothing changed then.
    pub fn reload(&self, loaded: &mosn_config::Loaded) -> Result<(), String> {
        let mut st = self.lock();
        self.publish(&loaded.raw, &st.services, st.xds.as_ref())
            .map_err(|f| f.message)?;
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
        match self.publish(&st.base, services, st.xds.as_ref()) {
            Ok(()) => {
                st.services = services.clone();
                tracing::info!(
                    services = services.len(),
                    hosts = services.values().map(Vec::len).sum::<usize>(),
                    "dubbo_registry: clusters and routes applied"
                );
            }
            Err(e) => {
                tracing::error!(error = %e.message, "dubbo_registry: cannot apply clusters and routes")
            }
        }
    }
}

/// A composed config that did not apply.
struct Failure {
    /// The xDS resource at fault, when the error is inside one.
    culprit: Option<(&'static str, String)>,
    message: String,
}

impl mosn_xds::Apply for Live {
    fn apply(&self, t: &mosn_xds::Translated) -> Result<(), mosn_xds::ApplyError> {
        let mut st = self.lock();
        match self.publish(&st.base, &st.services, Some(t)) {
            Ok(()) => {
                st.xds = Some(t.clone());
                Ok(())
            }
            Err(f) => Err(mosn_xds::ApplyError {
                culprit: f.culprit,
                message: f.message,
            }),
        }
    }
}

impl mosn_discovery::dubbo::Routing for Live {
    fn apply(&self, services: &BTreeMap<String, Vec<SocketAddr>>) {
        self.set_services(services)
    }
}
