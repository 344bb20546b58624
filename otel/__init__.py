"""The OpenTelemetry parts behind `telemetry.Telemetry`, each one job: `export` (exporters and
readers from the environment), `attributes` (a call's metric and span attributes), `conventions`
(the instruments, in the conventions' version chosen)."""
