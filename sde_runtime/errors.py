"""The one exception type for errors a user causes."""


class UserError(Exception):
    """A bad setting, a missing, corrupt or unfitting file, an unusable directory: something the user can fix.

    Raised where input is checked, with a message that names the bad value and what was expected;
    main.py prints it as one line. Any other exception is a bug and keeps its traceback.
    """
