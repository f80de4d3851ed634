"""The login kit both pages use (the gateway's hall page and central's dashboard): account
names and scrypt password hashes (``accounts``), signed session cookies (``sessions``), CSRF
and same-origin checks (``csrf``), the brake on password guessing (``brake``). Where the
accounts live and which roles they have stays with each side."""
