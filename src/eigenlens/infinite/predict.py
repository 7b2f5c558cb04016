"""placeholder"""
def predict(*a, **k):
    raise NotImplementedError
class Prediction: pass
