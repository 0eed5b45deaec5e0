"""Tenants, members, applications, keys, products and subscriptions: the business rules.

Writes check the permission matrix (portal.access) and record an audit event in the same
transaction; a service never trusts that the caller checked.
"""

from portal.services.cache import (  # noqa: F401
    PolicyInvalid,
    PurgeFailed,
    access_cache_policy_by_id,
    cache_policies_visible_to,
    cache_policy_delete,
    cache_policy_set,
    cache_purge,
    may_manage_cache,
)
from portal.services.common import (  # noqa: F401
    KEY_PREFIX,
    SYSTEM,
    TOKEN_PREFIX,
    Actor,
    ServiceError,
    audit,
    hash_secret,
)
from portal.services.guardrails import (  # noqa: F401
    GuardrailInvalid,
    access_guardrail_policy_by_id,
    guardrail_policies_visible_to,
    guardrail_policy_delete,
    guardrail_policy_set,
    may_manage_guardrails,
    policy_tenant,
)
from portal.services.keys import (  # noqa: F401
    IssuedKey,
    IssuedToken,
    api_key_create,
    api_key_revoke,
    api_key_rotate,
    application_create,
    personal_token_create,
    personal_token_revoke,
)
from portal.services.products import PRODUCT_FIELDS, product_create, product_update  # noqa: F401
from portal.services.subscriptions import (  # noqa: F401
    STATUS_CHANGES,
    subscription_decide,
    subscription_request,
    subscription_set_status,
)
from portal.services.tenants import (  # noqa: F401
    invitation_accept,
    invitation_create,
    membership_remove,
    membership_set_role,
    tenant_create,
    tenant_get_or_create,
)
