"""Webhooks: alerts POSTed to subscribers' URLs, signed, retried with backoff
(``python -m services.webhooks``; the API manages the subscriptions)."""
