"""Speech-driven facial animation (after Vougioukas, Petridis & Pantic, IJCV 2019): model, data, training."""
