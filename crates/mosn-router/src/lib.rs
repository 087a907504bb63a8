//! Route tables: virtual hosts by domain, routes by path and header, weighted clusters, rewrites,
//! redirects, direct responses and header mutation at router, virtual host and route level.
//!
//! Source: MOSN `pkg/router` and the `routers` config (<https://mosn.io/docs/configuration/>).

pub mod headers;
pub mod matcher;
pub mod table;

pub use headers::CompiledMutation;
pub use table::{Action, BuildError, Forward, Route, RouteTable, VirtualHost};
