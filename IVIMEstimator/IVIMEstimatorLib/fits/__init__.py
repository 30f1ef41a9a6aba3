"""IVIM estimators: least squares, Bayes, the networks and their protocol models."""
