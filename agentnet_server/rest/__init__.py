"""The REST shim: a generic HTTP/JSON transcoder over HTTPS with device certificates.

Routes are read from the `google.api.http` rules of every method of the service descriptors
(grpc-gateway style): path templates with variables and custom verbs, `body: "*"` or a named
body field, query parameters for the remaining fields, and `additional_bindings`. Adding an
annotated RPC to the protos adds its endpoint with no code change.

- errors.py: grpc-gateway's error body and HTTP status table
- routes.py: path templates and routes from the rules (any service)
- transcoder.py: HTTP request → protobuf request, protobuf response → JSON (any service)
- sse.py: `GET /api/events`, the Session stream as Server-Sent Events
- server.py: the aiohttp HTTPS server (`Gateway`), dispatching to the unary implementations
- openapi.py: the OpenAPI document from the same rules (`make openapi`)
"""
