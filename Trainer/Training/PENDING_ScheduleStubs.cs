// TEMPORARY (trainer-loop): stand-ins for the schedule library's names until branch main lands them.
// Delete this file when merging main.
namespace Schedules.Core
{
    public abstract class Schedule { }
    public sealed class ConstantSchedule : Schedule { }
    public static class ScheduleJson
    {
        public static Schedule Parse(string json) => new ConstantSchedule();
        public static string Write(Schedule s) => "{\"type\":\"Constant\"}";
    }
}
namespace Schedules.Torch
{
    public sealed class SchedulerState
    {
        public int LastEpoch;
        public string ToJson() => "{\"last_epoch\":" + LastEpoch + "}";
        public static SchedulerState FromJson(string json) => new() { LastEpoch = int.Parse(json.Split(':')[1].TrimEnd('}')) };
    }
    public interface ILRScheduler
    {
        void Step();
        void Step(double metric);
        IReadOnlyList<double> GetLastLr();
        int LastEpoch { get; }
        SchedulerState StateDict();
        void LoadStateDict(SchedulerState state);
    }
    public static class LRSchedulers
    {
        public static ILRScheduler Create(Schedules.Core.Schedule s, IParamGroups g) => new Const(g);
        sealed class Const(IParamGroups g) : ILRScheduler
        {
            readonly double[] _base = Enumerable.Range(0, g.Count).Select(g.GetLr).ToArray();
            public int LastEpoch { get; private set; }
            public void Step() => LastEpoch++;
            public void Step(double metric) => LastEpoch++;
            public IReadOnlyList<double> GetLastLr() => _base;
            public SchedulerState StateDict() => new() { LastEpoch = LastEpoch };
            public void LoadStateDict(SchedulerState s) => LastEpoch = s.LastEpoch;
        }
    }
}
