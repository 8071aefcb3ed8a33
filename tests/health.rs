//! `mesh health` against a real daemon (being written).
