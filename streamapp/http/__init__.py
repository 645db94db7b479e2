"""HTTP pieces shared by the worker and the serving processes: errors, request checks,
signing and forwarding between processes, the lookup endpoints, admission, the OpenAPI
document and the live page. No faust."""
