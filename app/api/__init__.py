"""The HTTP service: one router per resource, thin handlers over the library."""
