"""The OpenAI-compatible Files API: uploaded files kept per tenant in a store, copied into containers.

- `store`: the small async interface every backend implements, and the file record;
- `fsstore` / `s3store`: a directory (the local default) and any S3-compatible object store;
- `routes`: the /v1/files handlers the gateway mounts;
- `delivery`: copies stored files and skill bundles into a container through its sidecar.
"""
