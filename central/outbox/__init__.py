"""One outbox for everything central sends out: the 好差评 feed, SMS, e-mail and webhooks."""
