from django.db import models


class Note(models.Model):
    """A table with no unique constraint besides its id: a write applied
    twice shows up as two rows with the same text."""

    text = models.TextField()
    created = models.DateTimeField(auto_now_add=True)


class Tag(models.Model):
    note = models.ForeignKey(Note, on_delete=models.CASCADE)
    name = models.TextField()
