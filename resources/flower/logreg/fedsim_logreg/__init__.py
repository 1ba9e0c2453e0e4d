"""Logistic regression with FedAvg in numpy: fedsim's example Flower App."""
