"""Local parts for tests and benchmarks: Azurite, the Functions host driver, the chaos
runner, hostile webhooks."""
