"""Face geometry: the point convention, crops and their transform, landmark drawing, the dlib
landmarker and the face tracker. Imports nothing of the package above `errors` and `io`."""
