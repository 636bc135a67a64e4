"""The gateway's routes by area, as mixins of `services.gateway.service.Service`."""
