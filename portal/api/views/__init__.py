"""The management REST API: thin views over portal.access, portal.selectors and portal.services.

Every object is reached through an `access_*` door first (another tenant's object is a 404,
before any input is looked at); writes go through one service, which checks the permission
matrix (`access.Denied` is a 403) and writes the audit log.

One module per resource: `base` (plumbing shared by all), `tenants` (tenants, members,
invitations), `applications` (applications and keys), `catalog` (products and subscriptions),
`audit` (audit log and personal access tokens).
"""
