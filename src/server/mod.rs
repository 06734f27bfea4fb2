//! The HTTP service (service engineer implements): `pub fn router(state) -> axum::Router`
//! separate from `serve()`, one file per resource.
