"""Who may connect and what they may reach: central's certificate authority (``ca`` issues,
``ca_store`` keeps the CA on disk with every certificate issued and the CRL; files are
written by the shared kit's ``hallkit.atomicfile``), the broker's ACL and configs
(``broker_acl``), API bearer tokens and roles (``tokens``), the one table of who reaches what
(``access``) and the dashboard's login accounts (``accounts``, on the shared login kit
``hallkit.login``)."""
