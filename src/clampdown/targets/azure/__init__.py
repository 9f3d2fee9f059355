"""Azure API Management target: policy editing and the ARM connector."""
