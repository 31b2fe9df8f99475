"""The API's routers, one per concern: jobs, the service (model, health, metrics), the page."""
