"""The developer portal's pages: thin views over portal.access, selectors and services.

Objects are reached only through the `access_*` doors (404 for other tenants' objects);
writes go through `portal.services`, which check permissions and audit. `access.Denied`
becomes the 403 page; `services.ServiceError` is shown to the user (400 for htmx).

The pages live in modules by area (common plumbing, tenants, applications, catalog, tokens);
portal/urls.py imports them from there. Nothing is re-exported here.
"""
