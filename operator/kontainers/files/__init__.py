"""Storage of the OpenAI-compatible Files API: uploaded files kept per tenant, no HTTP.

- `store`: the small async interface every backend implements (`TenantFileStore`), and the record
  of a stored file (`TenantFile`);
- `fsstore` / `s3store`: a directory (the local default) and any S3-compatible object store.
- `parts`: the Uploads API's records and parts, beside the files on the same backend.

The /v1/files routes and the delivery of files into containers are the gateway's
(`gateway/files_api.py`, `gateway/delivery.py`, `gateway/file_inputs.py`); the wire objects are in
`api/file.py`; the operator's delivery gate is `resources/delivery_gate.py`.
"""
