"""Start and stop the cloud emulators the integration tests and benches use."""
