"""`importq serve`: the HTTP API for producers in any language, and the dashboard over it.

    app.py          the app factory: routers, error answers, the OpenAPI document
    auth.py         bearer tokens (stored hashed), their scopes, 401 vs 403
    bodies.py       a request body spooled to disk as it streams in: size cap, digest, format
    idempotency.py  Idempotency-Key: the same key and body give the same job
    callbacks.py    callback_url: a signed POST of the job's summary when it ends, retried
    jobs.py         /v1/targets/{target}/jobs and /v1/jobs...: publish, read, replay, cancel
    publishers.py   the publisher processes each body is handed to (the event loop only
                    speaks HTTP), replaced when one ends
    publishing.py   what a publisher does with a body: publish it, or list its errors (422)
    targets.py      /v1/targets: queues, consumers, pause and resume
    ui.py           the dashboard (/ui/, templates/): pages that read only the API
    models.py       the answers' shapes (what the OpenAPI document promises)

Nothing here reads a setting or opens a connection at import: `create_app` does.
"""
