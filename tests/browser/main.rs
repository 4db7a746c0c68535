//! The chat page (`src/server/web/`): its HTTP through a real HTTP client (hyper's), and the
//! page itself in a real headless Chromium driven over WebDriver (Selenium, from the venv
//! `bash tests/run` sets up) against chittyd in-process, with gRPC participants beside it.

mod chromium;
mod http;
