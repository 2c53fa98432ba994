"""Export: the records' one way out. The recorder is the only code that touches Prometheus,
OpenTelemetry metrics, spans and log records; labels are bounded here, and every foreign string
is redacted and truncated here."""
