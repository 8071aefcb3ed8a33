//! `mesh install` / `mesh uninstall` round trips on temp HOMEs (being written).
