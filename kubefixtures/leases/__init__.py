"""Session lifetime: the policy (``policy``: pure, when a namespace is garbage), the
session's renewals (``renewal``) and the reapers' reading and deleting (``reaping``). The
operator (kubefixtures.operator) runs the reaping continuously; ``kubefixtures gc`` once.
"""
