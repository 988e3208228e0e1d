//! The PostgreSQL store: written next (issue #13).
