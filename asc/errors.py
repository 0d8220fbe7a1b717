"""The one base class of the errors a user's input causes (a missing or malformed dataset, missing weights...).

The commands print such an error as one line naming what is wrong and what to do, and stop with status 2, without a
traceback (``HYDRA_FULL_ERROR=1`` shows it); any other exception is a bug and keeps its traceback.
"""


class UserMistake(Exception):
    """Raised for input the user can fix; the message names the file or setting, the problem and what to do."""


class SettingError(ValueError, UserMistake):
    """A setting's value is unusable (a wrong type, out of range, a window longer than the clips...); the message
    names the setting (``window=abc``) and what it must be."""
