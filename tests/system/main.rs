//! Installing claude-mesh: the service units (checked by systemd's own tools and run under a
//! private systemd user manager), `mesh install` / `mesh uninstall`, `mesh health`, and the Claude
//! Code configuration they write. One test binary (`cargo test -p mesh --test system
//! <module>::`).

mod claude_config;
mod health;
mod install;
mod service;
